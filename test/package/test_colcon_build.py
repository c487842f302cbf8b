"""The ament_cmake package builds with colcon (as in a ROS 2 workspace) and its install
tree holds a working Python package with the generated messages, the launch and config
files and the `ros2 run` executables.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.prefix)

# These are the tests that need an install tree: `colcon test` runs them against the tree its
# own `colcon build` installed (CMakeLists.txt passes its path), a plain pytest run builds one.
pytestmark = pytest.mark.installed


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    installed = os.environ.get("ITERPRIME_INSTALL_TREE")
    if installed:
        assert (Path(installed) / "share" / "iterprime_ros" / "package.xml").is_file(), installed
        return Path(installed)
    if not (VENV / "bin" / "colcon").exists():
        pytest.skip("colcon is not installed in this environment (scripts/setup.sh installs it)")
    ws = tmp_path_factory.mktemp("colcon_ws")
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "colcon_build.sh"), str(ws)],
        capture_output=True,
        text=True,
        env=dict(os.environ, VENV=str(VENV)),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return ws / "install" / "iterprime_ros"


def test_install_tree_layout(workspace: Path):
    share = workspace / "share" / "iterprime_ros"
    assert (share / "package.xml").is_file()
    assert (share / "launch" / "segment.launch.py").is_file()
    assert (share / "config" / "segment.yaml").is_file()
    for exe in ("segmenter", "play_bag"):
        assert os.access(workspace / "lib" / "iterprime_ros" / exe, os.X_OK)
    assert (share / "msg" / "Segmentation.msg").is_file() and (
        share / "srv" / "Segment.srv"
    ).is_file()


def test_installed_package_imports_with_its_messages(workspace: Path):
    site = (
        workspace
        / "lib"
        / f"python{sys.version_info.major}.{sys.version_info.minor}"
        / "site-packages"
    )
    code = (
        "import iterprime_ros, iterprime_ros.core.backend;"
        "from iterprime_ros.msg import Segmentation; from iterprime_ros.srv import Segment;"
        "m = Segmentation(expression='the cup'); print(iterprime_ros.__file__, m.expression)"
    )
    env = dict(
        os.environ,
        PYTHONPATH=str(site),
        LD_LIBRARY_PATH=os.pathsep.join(
            [str(workspace / "lib"), str(VENV / "lib"), os.environ.get("LD_LIBRARY_PATH", "")]
        ),
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=str(workspace),
    )  # not the checkout, which would shadow the install
    assert out.returncode == 0, out.stderr[-3000:]
    path, expr = out.stdout.strip().split(" ", 1)
    assert path.startswith(str(site)) and expr == "the cup"


def launch_file_remaps(path: Path) -> dict[str, str]:
    """The (input, default topic) pairs the launch file remaps, read from its source: `launch` and
    `launch_ros` are not installable from the registry, so the file cannot be imported here. Its
    REMAPS are built from iterprime_ros.ros.names (one definition with the replay's defaults);
    only that name is given to the expression.
    """
    from iterprime_ros.ros.names import DEFAULT_INPUT_TOPICS

    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            getattr(t, "id", None) == "REMAPS" for t in node.targets
        ):
            expr = compile(ast.Expression(node.value), str(path), "eval")
            names = {
                "DEFAULT_INPUT_TOPICS": DEFAULT_INPUT_TOPICS,
                "__builtins__": {"tuple": tuple},
            }
            return dict(eval(expr, names))  # noqa: S307 - the project's own launch file
    raise AssertionError(f"no REMAPS in {path}")


def test_launch_file_builds_its_description_where_launch_is_installed(workspace: Path):
    pytest.importorskip(
        "launch_ros", reason="launch/launch_ros are not on the registry (ROS apt installs only)"
    )
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "segment_launch", workspace / "share" / "iterprime_ros" / "launch" / "segment.launch.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    names = {a.name for a in description.get_launch_arguments()}
    assert {
        "config_file",
        "device",
        "image",
        "command",
        "depth",
        "camera_info",
        "autostart",
    } <= names


def _run_installed(workspace: Path, tmp_path: Path, *extra: str) -> tuple[list, set, str]:
    """Run the installed `segmenter` as the launch file starts it (installed config file, the
    launch file's default remappings, `extra` ros-args), send "the red cup" while a camera
    streams into the remapped image topic; returns (results, topics it subscribed, its log).
    """
    import ros_helpers  # noqa: F401  (this session's ROS_DOMAIN_ID before rclpy starts)
    from ros_helpers import EVENT_TIMEOUT_S, spin_until, stop

    rclpy = pytest.importorskip("rclpy")
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    share = workspace / "share" / "iterprime_ros"
    remaps = launch_file_remaps(share / "launch" / "segment.launch.py")
    assert remaps["image"] == "/camera/color/image_raw"
    site = (
        workspace
        / "lib"
        / f"python{sys.version_info.major}.{sys.version_info.minor}"
        / "site-packages"
    )
    env = dict(
        os.environ,
        PYTHONPATH=str(site),
        HF_HUB_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf"),
        LD_LIBRARY_PATH=os.pathsep.join(
            [str(workspace / "lib"), str(VENV / "lib"), os.environ.get("LD_LIBRARY_PATH", "")]
        ),
    )
    args = [
        sys.executable,
        str(workspace / "lib" / "iterprime_ros" / "segmenter"),
        "--ros-args",
        "--params-file",
        str(share / "config" / "segment.yaml"),
        "-p",
        "device:=cpu",
        *extra,
    ]
    for name, topic in remaps.items():
        args += ["-r", f"{name}:={topic}"]
    proc = subprocess.Popen(
        args,
        env=env,
        cwd=str(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    from iterprime_ros.msg import Segmentation

    rclpy.init()
    node = rclpy.create_node("launch_equivalence_test")
    results: list = []
    topics: set = set()
    try:
        node.create_subscription(Segmentation, "/iterprime_segmenter/result", results.append, 10)
        pub = node.create_publisher(String, remaps["command"], 10)
        image_pub = node.create_publisher(Image, remaps["image"], qos_profile_sensor_data)
        frame = Image(height=4, width=6, encoding="rgb8", step=18, data=bytes(72))
        node.create_timer(0.1, lambda: image_pub.publish(frame))

        def subscribed() -> set:
            if "iterprime_segmenter" not in node.get_node_names():
                return set()
            names = node.get_subscriber_names_and_types_by_node("iterprime_segmenter", "/")
            return {t for t, _ in names}

        assert spin_until(node, lambda: remaps["command"] in subscribed(), 90.0), subscribed()
        assert spin_until(node, lambda: pub.get_subscription_count() > 0, EVENT_TIMEOUT_S)
        # The camera inputs exist once the node is active: wait for them when it can be.
        spin_until(node, lambda: set(remaps.values()) <= subscribed(), 60.0 if extra else 2.0)
        spin_until(node, lambda: False, 1.0)  # the camera is streaming into the remapped topic
        pub.publish(String(data="the red cup"))
        assert spin_until(node, lambda: bool(results), 120.0)
        topics = subscribed()
    finally:
        node.destroy_node()
        rclpy.shutdown()
        out = stop(proc)
    expected = " ".join(f"{name}={topic}" for name, topic in remaps.items())
    assert f"listening: {expected};" in out, out[-3000:]
    return results, topics, out


def test_installed_executable_runs_as_the_launch_file_starts_it(workspace: Path, tmp_path: Path):
    """What `ros2 launch iterprime_ros segment.launch.py` runs, without launch: the installed
    `segmenter` executable with the installed config file and the launch file's default remappings.
    The default models are not on this machine, so the node must come up anyway (configure fails:
    it stays unconfigured, with no camera inputs) and answer a command with a failure that names
    the download command.
    """
    results, topics, out = _run_installed(workspace, tmp_path)
    assert not results[0].success
    assert "models not loaded" in results[0].error and "iterprime download" in results[0].error
    assert "configure failed: models not loaded" in out and "Traceback" not in out


def test_installed_executable_with_models_subscribes_to_every_remapped_input(
    workspace: Path, tmp_path: Path, tiny_model_dirs
):
    """The same run with (tiny, random-weight) models: the node activates and subscribes to the
    launch file's four remapped inputs, and the command is answered by the models.
    """
    results, topics, out = _run_installed(
        workspace,
        tmp_path,
        "-p",
        f"vlp_model:={tiny_model_dirs.blip}",
        "-p",
        f"proposal_model:={tiny_model_dirs.mask2former}",
        "-p",
        "empty_selection:=best_heat",
    )
    remaps = launch_file_remaps(
        workspace / "share" / "iterprime_ros" / "launch" / "segment.launch.py"
    )
    assert set(remaps.values()) <= topics, topics
    assert results[0].success, results[0].error + out[-3000:]
    assert results[0].header.frame_id == "" and results[0].mask.width == 6
