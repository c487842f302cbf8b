#!/usr/bin/env python3
"""Train the synthetic world's BLIP-architecture ITM model from scratch (no downloads).

A thin wrapper around ``iterprime_ros.world.train.main`` (see that module for the data, the
hard negatives and the loss). The committed checkpoint, models/world_blip, was produced on
a 2-core CPU machine (one torch thread, no GPU) by exactly:

    python scripts/train_world_model.py --out models/world_blip --steps 5000 --threads 1 --seed 0 \\
        --max-minutes 55

(the same as ``python -m iterprime_ros.world.train ...``; every other option at its default:
32 scenes per step, lr 5e-4, 400 warm-up steps, cosine decay, ITM loss only; --max-minutes
is only a safety stop and did not trigger). MODEL_CARD.md was written next to it afterwards;
pass ``--card FILE`` to copy a card into --out. The run is seeded: scene seeds, text
sampling and torch initialisation all derive from --seed and the step number.

    python scripts/train_world_model.py --out /tmp/world_try --steps 3 --threads 1   # smoke test
    python scripts/train_world_model.py --help
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from iterprime_ros.world.train import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
