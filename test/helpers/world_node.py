#!/usr/bin/env python3
"""Test-only launcher: the real segmenter node answering on the synthetic world, so a
conversation test gets meaningful, repeatable candidates (tiny random-weight models give masks
that mean nothing, and a question about them could not be checked).

The node is the product's own, run by its own main(); only the models differ: the world's
trained BLIP-architecture model (models/world_blip, named by the vlp_model parameter) and ORACLE
proposals: the generator's exact instance masks of the scenes in SEEDS, without the oracle's
distractor masks (tools/world/oracle.py), so every candidate the node offers is one whole object
of the scene and a test can name it. The proposal_model parameter must still name a loadable
folder, since configure checks it, but nothing is loaded from it. The same pixels always give
the same answer.

    python test/helpers/world_node.py --ros-args ...   (arguments as iterprime_ros.ros.node)
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# The world scenes the conversation test shows: six objects, three of them small cups
# (tools/world/fallback.py DEFAULT_SAMPLE_SEED), and the view after the camera moved (another
# scene of the same size, two cups among three objects).
SEEDS = (30_003_765, 30_003_774)


def world_segmenter(settings):
    """A Segmenter on the world model named by settings.vlp_model and the oracle proposals."""
    from iterprime_ros.pipeline import Segmenter
    from iterprime_ros.tools.world.fallback import world_backends
    from iterprime_ros.tools.world.scenes import generate_scene

    vlp, oracle = world_backends(None, settings.device, settings.gradcam_layer, settings.vlp_model)
    oracle.distractors = False
    for seed in SEEDS:
        oracle.register(generate_scene(seed))
    return Segmenter.from_backends(vlp, oracle, settings)


def main() -> None:
    from iterprime_ros.ros import node, processing

    processing.Segmenter = world_segmenter
    node.main()


if __name__ == "__main__":
    main()
