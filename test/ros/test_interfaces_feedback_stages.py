"""The action's feedback stages are named the same in the .action file, the docs and the code.

Why: a client switches on the stage string; a stage documented but never sent (or sent but
undocumented) is a client bug waiting to happen. The code's list is commands.FEEDBACK_STAGES;
the DDS test of the action (test_node_lifecycle.py) checks the node sends only those, in order.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("rclpy")
from iterprime_ros.ros.commands import FEEDBACK_STAGES  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ACTION = ROOT / "action" / "Segment.action"


def action_stages() -> list[str]:
    """The stages the .action file's comment on its `stage` field lists."""
    for line in ACTION.read_text().splitlines():
        if re.match(r"\s*string\s+stage\b", line):
            return [s.strip() for s in line.split("#", 1)[1].split("|")]
    raise AssertionError(f"no 'string stage' field in {ACTION}")


def test_the_action_file_names_the_stages_the_node_sends():
    assert action_stages() == list(FEEDBACK_STAGES)


def test_the_igrs_pass_comment_names_the_igrs_stage():
    line = next(x for x in ACTION.read_text().splitlines() if "igrs_pass" in x)
    during = re.search(r"during (\w+)", line.split("#", 1)[1])
    assert during and during.group(1) == "igrs" and "igrs" in FEEDBACK_STAGES, line


def test_every_stage_list_in_the_docs_is_the_code_list():
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    lists = []
    for path in docs:
        for line in path.read_text().splitlines():
            m = re.search(r"\bqueued\b.*\bselection\b", line)
            if m:
                lists.append((path.name, re.findall(r"[a-z_]+", m.group(0))))
    for name, stages in lists:
        assert stages == list(FEEDBACK_STAGES), f"{name} lists {stages}"
