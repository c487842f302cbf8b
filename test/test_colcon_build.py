"""The ament_cmake package builds with colcon (as in a ROS 2 workspace) and its install
tree holds a working Python package with the generated messages, the launch and config
files and the `ros2 run` executables."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    if not (VENV / "bin" / "colcon").exists():
        pytest.skip("colcon is not installed in this environment (scripts/setup.sh installs it)")
    ws = tmp_path_factory.mktemp("colcon_ws")
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "colcon_build.sh"), str(ws)],
                          capture_output=True, text=True, env=dict(os.environ, VENV=str(VENV)), timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return ws / "install" / "iterprime_ros"


def test_install_tree_layout(workspace: Path):
    share = workspace / "share" / "iterprime_ros"
    assert (share / "package.xml").is_file()
    assert (share / "launch" / "segment.launch.py").is_file()
    assert (share / "config" / "segment.yaml").is_file()
    for exe in ("segmenter", "play_bag"):
        assert os.access(workspace / "lib" / "iterprime_ros" / exe, os.X_OK)
    assert (share / "msg" / "Segmentation.msg").is_file() and (share / "srv" / "Segment.srv").is_file()


def test_installed_package_imports_with_its_messages(workspace: Path):
    site = workspace / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    code = ("import iterprime_ros, iterprime_ros.core.backend;"
            "from iterprime_ros.msg import Segmentation; from iterprime_ros.srv import Segment;"
            "m = Segmentation(expression='the cup'); print(iterprime_ros.__file__, m.expression)")
    env = dict(os.environ, PYTHONPATH=str(site),
               LD_LIBRARY_PATH=f"{workspace / 'lib'}:{VENV / 'lib'}:{os.environ.get('LD_LIBRARY_PATH', '')}")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                         cwd=str(workspace))  # not the checkout, which would shadow the install
    assert out.returncode == 0, out.stderr[-3000:]
    path, expr = out.stdout.strip().split(" ", 1)
    assert path.startswith(str(site)) and expr == "the cup"
