"""Every switch the documentation names can be set from every entry point.

The README and the pages under docs/ name the method's switches (`no_primary`, `stop_rule`,
`single_pass` ...); each must be a pipeline setting (Python API), a row of the node's parameter
table (node parameters, --config) and reachable through the CLI's `--set`, so a documented
switch never turns out to be unreachable.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from iterprime_ros.pipeline import SegmenterSettings
from iterprime_ros.ros.params import SPECS, ParameterError, validate
from iterprime_ros.tools.cli import UserError, apply_overrides

ROOT = Path(__file__).resolve().parents[2]


def documented_switches() -> set[str]:
    names: set[str] = set()
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = page.read_text()
        for m in re.finditer(r"[Ss]witch(?:es)?((?:[ ,]*(?:and )?`[a-z_]+(?:=[^`]*)?`)+)", text):
            names.update(re.findall(r"`([a-z_]+)", m.group(1)))
    return names


def test_the_documentation_names_the_switches():
    assert {"no_primary", "stop_rule", "single_pass", "primary_tags"} <= documented_switches()


@pytest.mark.parametrize("name", sorted(documented_switches()))
def test_a_documented_switch_is_a_setting_and_a_node_parameter(name):
    assert name in SegmenterSettings.field_names()
    assert name in SPECS and SPECS[name].setting


def test_single_pass_reaches_igrs_from_set_node_parameters_and_python():
    via_cli = apply_overrides(SegmenterSettings(), ["single_pass=plain"])
    assert via_cli.igrs_settings().single_pass == "plain"
    via_node = validate({"single_pass": "plain"}).segmenter
    assert via_node.igrs_settings().single_pass == "plain"
    assert SegmenterSettings().igrs_settings().single_pass == "sigmoid"  # the reference
    with pytest.raises(UserError, match="single_pass"):
        apply_overrides(SegmenterSettings(), ["single_pass=sharp"])
    with pytest.raises(ParameterError, match="single_pass"):
        validate({"single_pass": "sharp"})


def test_the_default_text_limit_is_the_model_position_table_not_35():
    # the official per-expression path does not cut at 35 tokens; the backends cap at the model
    assert SegmenterSettings().max_text_tokens == 512 == SPECS["max_text_tokens"].high
