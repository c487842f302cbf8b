"""Shared fixtures: tiny random-weight models, built once per test session.

Random weights test plumbing only (shapes, hooks, masking, caching, loading, errors) --
never segmentation quality. Heavy imports happen inside the fixtures so tests that do not
use them (ROS interface tests) do not pay for torch/transformers at collection.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# The tests mirror the package (core/, models/, pipeline/, ros/, tools/, package/, and any
# folder added beside them) and import their shared helpers (test/helpers/) and a few crafted
# cases of a sibling file by module name, so every one of these folders is importable whichever
# file or folder pytest is asked to run.
TEST_ROOT = Path(__file__).resolve().parent
for _folder in sorted(TEST_ROOT.iterdir()):
    if _folder.is_dir() and _folder.name[0] not in "._" and str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

# This process's own DDS domain (one per run and per parallel worker), set before any test or
# fixture starts rclpy or a node, including tests that never import the helper themselves.
import ros_helpers  # noqa: E402, F401

# Tests never reach the network, whatever a test does with Hugging Face ids.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# One intra-op thread (also for CLI subprocesses): on 2 shared cores, torch's default of 2 OpenMP
# threads spin-waits against other processes and made tiny-model passes 10-50x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under `colcon test` (CMakeLists.txt sets ITERPRIME_INSTALL_TREE) run only the tests that
    need the installed tree, because CI runs the rest once with `make test`; a robot's workspace
    runs everything with ITERPRIME_FULL_SUITE=1.
    """
    colcon_test = bool(os.environ.get("ITERPRIME_INSTALL_TREE"))
    if not colcon_test or os.environ.get("ITERPRIME_FULL_SUITE") == "1":
        return
    keep = [item for item in items if item.get_closest_marker("installed")]
    config.hook.pytest_deselected(items=[item for item in items if item not in keep])
    items[:] = keep


@dataclass(frozen=True)
class TinyModelDirs:
    """Folders of the saved tiny models (also readable as a dict: dirs["blip"],
    dirs["mask2former"]).
    """

    blip: Path
    mask2former: Path

    def __getitem__(self, key: str) -> Path:
        return getattr(self, key)

    def keys(self) -> list[str]:
        return ["blip", "mask2former"]

    def cli_args(self) -> list[str]:
        """The `iterprime` options that run on these models, on the CPU."""
        return ["--vlp", str(self.blip), "--proposals", str(self.mask2former), "--device", "cpu"]


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory: pytest.TempPathFactory) -> TinyModelDirs:
    """Tiny BLIP ITM (96 px, g = 6, 12 text layers of width 32) and Mask2Former (tiny Swin,
    8 queries), saved with save_pretrained into a temp folder. Random weights: plumbing only.

    Built once per run: the parallel workers of a pytest-xdist run share the run's temp root,
    so the first worker builds the folders under a file lock and the others read them.
    """
    import torch
    from filelock import FileLock

    from iterprime_ros.models.loading import quiet_transformers
    from iterprime_ros.tools.tiny_models import build_tiny_blip, build_tiny_mask2former

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    quiet_transformers()
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    root = shared / "tiny_models"
    with FileLock(str(shared / "tiny_models.lock")):
        if not (root / "complete").is_file():
            build_tiny_blip(root / "blip", seed=0)
            build_tiny_mask2former(root / "mask2former", seed=0)
            (root / "complete").touch()
    return TinyModelDirs(blip=root / "blip", mask2former=root / "mask2former")


@pytest.fixture(scope="session")
def tiny_blip(tiny_model_dirs: TinyModelDirs) -> Any:
    """BlipITMBackend on the tiny BLIP, CPU, Grad-CAM layer 8 (loaded through
    models/loading.py).
    """
    from iterprime_ros.models.blip import BlipITMBackend

    return BlipITMBackend(tiny_model_dirs.blip, device="cpu", gradcam_layer=8)


@pytest.fixture(scope="session")
def tiny_proposals(tiny_model_dirs: TinyModelDirs) -> Any:
    """Mask2FormerProposals on the tiny Mask2Former, CPU, the method's 800/1333 input size."""
    from iterprime_ros.models.mask2former import Mask2FormerProposals

    return Mask2FormerProposals(tiny_model_dirs.mask2former, device="cpu")


@pytest.fixture(scope="session")
def start_node(tiny_model_dirs: TinyModelDirs, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The one way a test starts the segmenter node as its own process, over real DDS in this
    session's domain: `start_node(namespace, params, **options)` returns a running
    node_harness.NodeProcess on the tiny models (node_harness.tiny_params updated with `params`),
    with its parameter file in a fresh temp folder. `options` go to NodeProcess (topics,
    fault_node, program, cwd, folder, environment variables).

    The test or fixture that started a node stops it when done (its log ends with the stats line
    written at shutdown); any node still running when the session ends is stopped here, so a
    failing test never leaves one behind.
    """
    from node_harness import NodeProcess, tiny_params

    started: list[NodeProcess] = []

    def start(namespace: str, params: dict[str, Any] | None = None, **options: Any) -> Any:
        folder = options.pop("folder", None) or tmp_path_factory.mktemp(namespace or "node")
        node = NodeProcess(
            namespace, tiny_params(tiny_model_dirs, **(params or {})), folder, **options
        )
        started.append(node)
        return node

    yield start
    for node in started:
        node.interrupt()
    for node in started:
        node.stop()


def _node_starts() -> int:
    harness = sys.modules.get("node_harness")
    return harness.NodeProcess.started if harness is not None else 0


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A parallel worker hands its count of node starts to the controller (pytest-xdist)."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["node_starts"] = _node_starts()


_WORKER_NODE_STARTS: list[int] = []


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """The controller of a parallel run collects each worker's count of node starts."""
    _WORKER_NODE_STARTS.append(getattr(node, "workeroutput", {}).get("node_starts", 0))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """How many node processes this run started: each costs a Python start, the imports of
    torch and rclpy and a model load, so the figure shows where a run waits rather than works.
    """
    starts = _node_starts() + sum(_WORKER_NODE_STARTS)
    if starts:
        terminalreporter.write_line(f"segmenter node processes started: {starts}")


@pytest.fixture(scope="session")
def sample_image() -> Any:
    """A 120 x 200 RGB test picture (non-square): a red box and a blue disc on a gradient."""
    import cv2
    import numpy as np

    h, w = 120, 200
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(xx * 255 // w), (yy * 255 // h), np.full_like(xx, 90)], axis=-1).astype(
        np.uint8
    )
    img[30:80, 20:80] = (220, 30, 30)
    cv2.circle(img, (140, 60), 28, (30, 40, 220), -1)
    return img
