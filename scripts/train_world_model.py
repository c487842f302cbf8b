#!/usr/bin/env python3
"""Train the synthetic world's BLIP-architecture ITM model (no downloads).

A thin wrapper around ``iterprime_ros.world.train.main`` (see that module for the data, the
hard negatives and the losses). The committed checkpoint, models/world_blip, was produced in
two stages on a 2-core CPU machine (no GPU) by exactly:

    # stage 1, from scratch, ITM loss only (45.7 min, one torch thread)
    python scripts/train_world_model.py --out models/world_blip --steps 5000 --threads 1 --seed 0 \
        --max-minutes 55
    # stage 2, fine-tuned from stage 1 with the layer-3 cross-attention grounding loss (target
    # masks of TRAINING scenes only) and erased-target negatives (20.9 min, two torch threads)
    python scripts/train_world_model.py --out models/world_blip --init-from models/world_blip \
        --steps 2800 --warmup 100 --lr 3e-4 --threads 2 --seed 0 --grounding-weight 2.0 \
        --grounding-layer 3 --erase-prob 0.5 --data-offset 160000 --checkpoint-every 200 --max-minutes 26

(the same as ``python -m iterprime_ros.world.train ...``; stage 1 with every other option at its
default: 32 scenes per step, lr 5e-4, 400 warm-up steps, cosine decay; --max-minutes is only a
safety stop and triggered in neither stage). Stage 2 was written to /tmp/world_v2 and copied
over models/world_blip. MODEL_CARD.md was written next to it afterwards; pass ``--card FILE`` to
copy a card into --out. Both runs are seeded: scene seeds, text sampling, erased negatives and
torch initialisation all derive from --seed and the step number.

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
