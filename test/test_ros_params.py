"""The node's parameter table (iterprime_ros/ros/params.py): one place, matches the pipeline
settings and config/segment.yaml, and a bad value gives a clear error and exit code 2.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import ros_helpers  # noqa: F401  (this session's ROS_DOMAIN_ID)
import yaml

from iterprime_ros.pipeline import SegmenterSettings
from iterprime_ros.ros.params import PARAMETERS, SPECS, ParameterError, validate, yaml_defaults

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config" / "segment.yaml"
NODE_BIN = Path(sys.executable).with_name("iterprime-node")


def _config() -> dict:
    return yaml.safe_load(CONFIG.read_text())["/**/iterprime_segmenter"]["ros__parameters"]


def test_table_covers_every_pipeline_setting_once():
    settings = {f.name for f in dataclasses.fields(SegmenterSettings)}
    rows = [p.name for p in PARAMETERS if p.setting]
    assert len(rows) == len(set(rows))
    assert set(rows) == settings, (
        "every SegmenterSettings field is a node parameter and vice versa"
    )
    for p in PARAMETERS:
        assert p.description and p.allowed


def test_config_file_lists_every_parameter_with_its_default():
    cfg = _config()
    assert set(cfg) == set(SPECS)
    assert cfg == yaml_defaults(), "config/segment.yaml must say what the node does without it"
    params = validate(cfg)
    assert params.segmenter == SegmenterSettings()
    assert params.node.queue_size == 5 and params.node.max_image_age_s == 2.0


def test_values_reach_the_settings():
    p = validate(
        {
            "device": "CPU",
            "gradcam_layer": 6,
            "primary_tags": ["NN", "NNS"],
            "max_image_age_s": 3,
            "extra_command_phrases": ["", "robot"],
            "queue_size": 2,
            "publish_debug_image": False,
        }
    )
    assert p.segmenter.device == "cpu" and p.segmenter.gradcam_layer == 6
    assert p.segmenter.primary_tags == ("NN", "NNS") and p.segmenter.extra_command_phrases == (
        "robot",
    )
    assert p.node.max_image_age_s == 3.0 and isinstance(p.node.max_image_age_s, float)
    assert p.node.queue_size == 2 and p.node.publish_debug_image is False


@pytest.mark.parametrize(
    "values, words",
    [
        (
            {"device": "gpu"},
            "parameter 'device' = 'gpu': not a device; allowed: auto, cpu, cuda or cuda:N",
        ),
        (
            {"queue_size": 0},
            "parameter 'queue_size' = 0: too small; allowed: an integer >= 1 and <= 1000",
        ),
        ({"queue_size": 2.5}, "parameter 'queue_size' = 2.5: wrong type"),
        ({"max_image_age_s": 0.0}, "'max_image_age_s' = 0.0: too small; allowed: a number > 0"),
        ({"max_image_age_s": "2"}, "'max_image_age_s' = '2': wrong type"),
        ({"aggregation": "max"}, "allowed: one of: pwem, global, local, gvlp, mean"),
        ({"igrs_alpha": 1.5}, "'igrs_alpha' = 1.5: too large"),
        ({"prompt_template": "a photo"}, "'prompt_template' = 'a photo': not a template"),
        (
            {"primary_tags": ["VB"]},
            "unknown tags ['VB']; allowed: a non-empty list of NN, NNS, NNP, NNPS",
        ),
        (
            {"half_precision": "yes"},
            "'half_precision' = 'yes': wrong type (str); allowed: true or false",
        ),
        ({"queue_sise": 3}, "unknown parameter(s) queue_sise"),
        (
            {"proposal_shortest_edge": 900, "proposal_longest_edge": 800},
            "'proposal_longest_edge' must be >=",
        ),
    ],
)
def test_bad_values_are_named_with_what_is_allowed(values, words):
    with pytest.raises(ParameterError) as err:
        validate(values)
    assert words in str(err.value)


def test_every_bad_value_is_reported_at_once():
    with pytest.raises(ParameterError) as err:
        validate({"queue_size": -1, "device": "tpu"})
    assert "'queue_size'" in str(err.value) and "'device'" in str(err.value)


def test_declared_on_a_node_with_descriptors_and_file_overrides(tmp_path):
    rclpy = pytest.importorskip("rclpy")
    from rclpy.node import Node

    from iterprime_ros.ros.params import declare_and_read

    override = tmp_path / "over.yaml"
    override.write_text(
        "iterprime_segmenter:\n  ros__parameters:\n    queue_size: 7\n    max_image_age_s: 1\n"
    )
    ctx = rclpy.Context()
    rclpy.init(
        context=ctx,
        args=[
            "x",
            "--ros-args",
            "--params-file",
            str(CONFIG),
            "--params-file",
            str(override),
            "-p",
            "device:=cpu",
        ],
    )
    try:
        node = Node("iterprime_segmenter", context=ctx)
        params = declare_and_read(node)
        assert (params.node.queue_size, params.node.max_image_age_s, params.segmenter.device) == (
            7,
            1.0,
            "cpu",
        )
        desc = node.describe_parameter("queue_size")
        assert not desc.read_only and "commands that may wait" in desc.description
        assert desc.additional_constraints == "an integer >= 1 and <= 1000"
        desc = node.describe_parameter("vlp_model")  # the node's callback decides, and says why
        assert not desc.read_only and "change while unconfigured" in desc.description
        node.destroy_node()
        bad = Node(
            "iterprime_segmenter", context=ctx, cli_args=["--ros-args", "-p", "queue_sise:=3"]
        )
        with pytest.raises(ParameterError, match="unknown parameter.*queue_sise"):
            declare_and_read(bad)
        bad.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)


def _run_node(*ros_args: str) -> subprocess.CompletedProcess:
    cmd = (
        [str(NODE_BIN)] if NODE_BIN.exists() else [sys.executable, "-m", "iterprime_ros.ros.node"]
    )
    return subprocess.run(
        [*cmd, *ros_args], env=dict(os.environ), capture_output=True, text=True, timeout=120
    )


def test_node_exits_2_with_a_clear_message_for_a_bad_value():
    proc = _run_node(
        "--ros-args", "--params-file", str(CONFIG), "-p", "queue_size:=0", "-p", "device:=gpu"
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "parameter 'queue_size' = 0: too small; allowed: an integer >= 1 and <= 1000" in out
    assert "parameter 'device' = 'gpu'" in out
    assert "Traceback" not in out


def test_help_lists_the_parameters():
    proc = _run_node("--help")
    assert proc.returncode == 0
    for p in PARAMETERS:
        assert p.name in proc.stdout
    lines = {line.split()[0]: line for line in proc.stdout.splitlines() if line.startswith("  ")}
    assert "[live]" in lines["igrs_alpha"] and "[live]" not in lines["vlp_model"]
    for word in ("lifecycle", "~/enable", "/diagnostics", "action", "keep-all"):
        assert word in proc.stdout, word


def test_config_file_applies_in_any_namespace(tmp_path):
    """config/segment.yaml is keyed /**/iterprime_segmenter: a namespaced node (launch
    namespace:=robot1) still gets the file's values, not the built-in defaults.
    """
    rclpy = pytest.importorskip("rclpy")
    from rclpy.node import Node

    from iterprime_ros.ros.params import declare_and_read

    text = CONFIG.read_text()
    assert "\n    queue_size: 5 " in text
    edited = tmp_path / "segment.yaml"  # the shipped file with a non-default value, same keying
    edited.write_text(text.replace("\n    queue_size: 5 ", "\n    queue_size: 9 "))
    ctx = rclpy.Context()
    rclpy.init(context=ctx, args=["x", "--ros-args", "--params-file", str(edited)])
    try:
        for namespace in ("/robot1", "/"):
            node = Node("iterprime_segmenter", namespace=namespace, context=ctx)
            assert declare_and_read(node).node.queue_size == 9, node.get_fully_qualified_name()
            node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)


def test_robot_frame_parameters():
    node = validate(
        {
            "target_frame": "base_link",
            "transform_timeout_s": 0.5,
            "image_transport": "compressed",
            "image_rectified": True,
        }
    ).node
    assert (node.target_frame, node.transform_timeout_s) == ("base_link", 0.5)
    assert (node.image_transport, node.image_rectified) == ("compressed", True)
    assert validate({}).node.target_frame == "", "default: the camera frame"
    for bad in ("/base_link", "base link", " base_link"):
        with pytest.raises(ParameterError, match="'target_frame'.*not a tf2 frame id"):
            validate({"target_frame": bad})
    with pytest.raises(ParameterError, match="'image_transport'.*raw, compressed"):
        validate({"image_transport": "theora"})


@pytest.mark.parametrize(
    "text, words",
    [
        ("/**/iterprime_segmenter:\n  ros__parameters:\n    queue_size: '7'\n", "'7': wrong type"),
        ("/**:\n  ros__parameters:\n    queue_size: 7.0\n", "7.0: wrong type"),
        (
            "iterprime_segmenter:\n  ros__parameters:\n    max_image_age_s: fast\n",
            "'max_image_age_s' = 'fast': wrong type",
        ),
        ("/**/iterprime_segmenter:\n  ros__parameters:\n    igrs_alpha: 2.0\n", "too large"),
        ("iterprime_segmenter:\n  ros__parameters:\n    queue_size: [\n", "not valid YAML"),
        ("- just a list\n", "expected 'node_name: {ros__parameters"),
    ],
)
def test_a_bad_value_in_any_params_file_stops_the_start(tmp_path, text, words):
    """Also in a second file with the same key as the first, which rcl's merge would silently
    drop (it keeps the first file's value when the type differs), and a malformed file (rcl:
    traceback, exit 1).
    """
    second = tmp_path / "second.yaml"
    second.write_text(text)
    proc = _run_node("--ros-args", "--params-file", str(CONFIG), "--params-file", str(second))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "bad parameters" in out and words in out, out
    assert "Traceback" not in out


def test_params_file_keys_match_the_node_as_rcl_does():
    from iterprime_ros.ros.params import _matches

    fqn = "/robot1/iterprime_segmenter"
    assert _matches("/**", fqn) and _matches("/**/iterprime_segmenter", fqn)
    assert _matches("/robot1/iterprime_segmenter", fqn) and _matches("/*/iterprime_segmenter", fqn)
    assert not _matches("iterprime_segmenter", fqn) and not _matches("/robot2/*", fqn)
    assert _matches("iterprime_segmenter", "/iterprime_segmenter")
    assert _matches("/**/iterprime_segmenter", "/iterprime_segmenter")


def test_one_params_file_reader_for_node_and_tools(tmp_path):
    """replay/segment/demo read a params file with the node's reader and rcl's key matching."""
    from iterprime_ros.ros.params import node_parameters, read_params_file
    from iterprime_ros.tools.errors import UserError
    from iterprime_ros.tools.replay import load_parameters

    path = tmp_path / "p.yaml"
    path.write_text(
        "/**:\n  ros__parameters:\n    igrs_iterations: 2\n    queue_size: 3\n"
        "/**/iterprime_segmenter:\n  ros__parameters:\n    igrs_iterations: 1\n"
        "other_node:\n  ros__parameters:\n    queue_size: 99\n"
    )
    data = read_params_file(str(path))
    assert node_parameters(data, "/iterprime_segmenter") == {"igrs_iterations": 1, "queue_size": 3}
    params = load_parameters(str(path))
    assert params.segmenter.igrs_iterations == 1 and params.node.queue_size == 3
    other = tmp_path / "other.yaml"
    other.write_text("camera:\n  ros__parameters:\n    fps: 30\n")
    with pytest.raises(UserError, match="no parameters for iterprime_segmenter"):
        load_parameters(str(other))
