"""One parameter table for every entry point (iterprime_ros/ros/param_*.py): the node, the CLI's
``--set`` and the benchmarks accept the same values, a bare YAML ``off`` is read as the word it
was meant to be (or refused with the fix), and ``prefetch`` is parsed once into a policy.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from iterprime_ros.core.igrs import STOP_RULES
from iterprime_ros.pipeline import SegmenterSettings
from iterprime_ros.prefetch import PrefetchPolicy
from iterprime_ros.ros.params import (
    PARAMETERS,
    ParameterError,
    check_params_files,
    node_parameters,
    read_params_file,
    validate,
)
from iterprime_ros.tools.cli import apply_overrides
from iterprime_ros.tools.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "iterprime_ros"


def test_every_stop_rule_the_pipeline_takes_the_node_and_cli_take():
    for rule in STOP_RULES:
        assert validate({"stop_rule": rule}).segmenter.stop_rule == rule
        assert apply_overrides(SegmenterSettings(), [f"stop_rule={rule}"]).stop_rule == rule
    with pytest.raises(UserError, match="stop_rule"):
        apply_overrides(SegmenterSettings(), ["stop_rule=sometimes"])


def test_every_choice_in_the_table_builds_a_pipeline_setting():
    for spec in PARAMETERS:
        for choice in spec.choices or ():
            if spec.setting:
                settings = apply_overrides(SegmenterSettings(), [f"{spec.name}={choice}"])
                assert getattr(settings, spec.name) == choice
            assert validate({spec.name: choice})


def test_prefetch_is_parsed_once_into_a_policy():
    node = validate({"prefetch": "every:3"}).node
    assert node.prefetch == PrefetchPolicy("every", 3)
    assert validate({}).node.prefetch == PrefetchPolicy("latest")
    assert not validate({"prefetch": "off"}).node.prefetch.enabled


def test_a_bare_yaml_off_means_off_for_words_that_have_it(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("/**:\n  ros__parameters:\n    prefetch: off\n    autocast: off\n")
    data = read_params_file(str(path))
    values = node_parameters(data, "/iterprime_segmenter")
    assert values == {"prefetch": False, "autocast": False}  # what YAML 1.1 gives
    check_params_files([str(path)], "/iterprime_segmenter")  # accepted
    params = validate(values)
    assert not params.node.prefetch.enabled
    assert params.segmenter.autocast == "off"


@pytest.mark.parametrize(
    "text, name",
    [
        ("prefetch: on", "prefetch"),
        ("prefetch: yes", "prefetch"),
        ("stop_rule: no", "stop_rule"),
        ("image_qos: off", "image_qos"),
    ],
)
def test_other_yaml_booleans_are_refused_with_the_fix(tmp_path, text, name):
    path = tmp_path / "p.yaml"
    path.write_text(f"/**:\n  ros__parameters:\n    {text}\n")
    with pytest.raises(ParameterError, match=f"'{name}'.*boolean; quote the value"):
        check_params_files([str(path)], "/iterprime_segmenter")
    with pytest.raises(ParameterError, match="quote the value"):
        validate(node_parameters(read_params_file(str(path)), "/iterprime_segmenter"))


def test_parameter_modules_stay_under_the_size_rule():
    for name in ("params.py", "param_spec.py", "param_table.py", "params_files.py"):
        lines = (RUNTIME / "ros" / name).read_text().count("\n")
        assert lines <= 500, (name, lines)
