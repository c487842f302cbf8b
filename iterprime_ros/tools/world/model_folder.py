"""Where the committed world model lives and which Grad-CAM layer it was trained for.

Why a module of its own: the demo's fallback, the world evaluation and its dialogue part all
need the folder; keeping it here lets each import it without importing the others.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def world_model_folder() -> Path:
    """The committed world model: $ITERPRIME_WORLD_MODEL, else <repo>/models/world_blip (else the
    installed package's share/iterprime_ros/models/world_blip).
    """
    env = os.environ.get("ITERPRIME_WORLD_MODEL")
    if env:
        return Path(env).expanduser()
    source = Path(__file__).resolve().parents[3] / "models" / "world_blip"
    if source.is_dir():
        return source
    # a colcon install: <prefix>/share/iterprime_ros/models/world_blip (when CMake installs
    # models/)
    try:
        from ament_index_python.packages import get_package_share_directory

        shared = Path(get_package_share_directory("iterprime_ros")) / "models" / "world_blip"
        if shared.is_dir():
            return shared
    except Exception:  # not a ROS environment, or the package is not installed
        pass
    return source


def recommended_gradcam_layer(folder: Path, default: int = 8) -> int:
    """The layer chosen on validation scenes at training time (world_config.json), else
    `default`.
    """
    try:
        cfg = json.loads((Path(folder) / "world_config.json").read_text())
        layer = cfg.get("gradcam_layer")
        return int(layer) if layer is not None else default
    except (OSError, ValueError):
        return default
