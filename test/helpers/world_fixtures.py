"""The tiny world-model configuration the world tests share, and a random-weight save of a
configuration (as train.py saves it).

Random weights: tests using them check plumbing, never quality.
"""

from __future__ import annotations

from pathlib import Path

from iterprime_ros.tools.world.model import (
    WorldModelConfig,
    build_model,
    build_tokenizer,
    save_world_model,
)

TINY = WorldModelConfig(
    image_size=64,
    patch_size=16,
    vision_hidden=32,
    vision_layers=1,
    vision_heads=2,
    vision_intermediate=64,
    text_hidden=32,
    text_layers=3,
    text_heads=2,
    text_intermediate=64,
    max_positions=40,
    itc_dim=16,
)


def save_random_world_model(folder: Path, cfg: WorldModelConfig, seed: int) -> Path:
    """A random-init model of `cfg` saved into `folder` as train.py saves; returns `folder`."""
    model = build_model(cfg, seed=seed).eval()
    save_world_model(model, build_tokenizer(cfg.max_positions), folder, cfg)
    return folder
