"""`iterprime bench`: how long from a command to its mask, per stage, against a naive run.

What is measured is the real pipeline: ``Segmenter`` (the object the node and `iterprime segment`
use) with its backends loaded through the project's loading code from model folders. The models
have the real architectures (BLIP ITM base, Mask2Former Swin-L with 200 queries, ...) built from
their ``transformers`` configs with random weights: the time of a forward or backward pass does
not depend on the weight values, so the figures hold for the released checkpoints. What
the random weights would change is fixed instead: IGRS runs all its passes
(``stop_rule="none"``; the node's reference rule may stop after 2), a command always gets a
mask (``empty_selection="best_heat"``: random masks are often too fragmented to be valid), and
the Mask2Former mask head is scaled so the masks cover about 8 % of the image on average (a
random head gives 200 full-image masks, every one covering the heat peak). The tokenizer is a
small word-level one that knows every word of the benchmark commands, so they tokenize to as
many tokens as with BERT's vocabulary.

Phases (each on the same photograph, skimage's "coffee", resized to --size):

* first command on a new frame: proposals + image encoding + IGRS passes + selection;
* command on a prefetched frame: ``Segmenter.prepare_frame`` ran on the frame before (untimed,
  as the node's prefetcher does while the robot is idle), so the command costs parse + text
  passes + selection;
* second command on the same frame: the frame cache serves proposals and image encoding;
* sustained: --commands commands in a row on one frame (an operator's follow-ups);
* naive (--naive): what the reference code does per IGRS pass -- parse again, recompute the
  proposals, encode the image again with the autograd graph through the vision encoder, and
  backpropagate the match logit through the whole model (``loss.backward()`` with parameter
  gradients) -- and selection with a Python loop over the proposals, connected components for
  each. It drives the same backends without their caches; the pipeline has no naive path.

Every command's "conversion" time is what the node adds around the pipeline: the camera
image message to an array (first command on a frame) and the result to the Segmentation and
mask messages (every command). Peak memory: host RSS (getrusage) and, on CUDA,
torch.cuda.max_memory_allocated per phase. On CUDA the clock is read after a synchronize.
"""

from __future__ import annotations

# The parts, each with one job: config.py (settings, commands, stages), run.py (the timed run),
# report.py (the text report), command.py (the command line), architectures.py (the models),
# measure.py (clocks and counters), naive.py (the reference code's way), selection_probe.py,
# extras.py (previous path, speed knobs, device report), precision.py (fp16 vs fp32).
from .architectures import PROPOSAL_ARCHS, VLP_ARCHS
from .command import add_subparser, cmd_bench
from .config import COMMANDS, STAGES, BenchConfig
from .naive import naive_select
from .report import format_report
from .run import run_bench
from .selection_probe import synthetic_proposals

__all__ = [
    "COMMANDS",
    "PROPOSAL_ARCHS",
    "STAGES",
    "VLP_ARCHS",
    "BenchConfig",
    "add_subparser",
    "cmd_bench",
    "format_report",
    "naive_select",
    "run_bench",
    "synthetic_proposals",
]
