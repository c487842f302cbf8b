#!/usr/bin/env python3
r"""Train the synthetic world's BLIP-architecture ITM model (no downloads).

A thin wrapper around ``iterprime_ros.tools.world.train.main`` (see that module for the data, the
hard negatives and the losses). The committed checkpoint, models/world_blip, was trained from
scratch in one run of 47.2 minutes on a 2-core CPU machine (no GPU) by exactly:

    python scripts/train_world_model.py --out models/world_blip --steps 6000 --warmup 300 \
        --lr 5e-4 --threads 2 --seed 0 --grounding-weight 2.0 --grounding-layers 1 2 3 \
        --ground-anchor --erase-prob 0.5 --vision-aux-weight 1.0 --vision-aux-position 1.0 \
        --checkpoint-every 250 --max-minutes 58

(the same as ``python -m iterprime_ros.tools.world.train ...``; 32 scenes per step, cosine decay;
--max-minutes is a safety stop that did not trigger). It was written to /tmp/runs/D and copied
over models/world_blip; MODEL_CARD.md was written next to it afterwards (``--card FILE`` copies a
card into --out). Everything is seeded: scene seeds, text sampling, erased negatives and torch
initialisation derive from --seed and the step number. Then the Grad-CAM layer is chosen on
validation scenes: ``python -m iterprime_ros.tools.world.evaluate --select-gradcam-layer``.

The earlier committed model (two stages: ITM only from scratch, then a grounding fine-tune;
66.6 minutes in all) is described in docs/world_results.md.

    python scripts/train_world_model.py --out /tmp/world_try --steps 3 --threads 1   # smoke test
    python scripts/train_world_model.py --help
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from iterprime_ros.tools.world.train import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
