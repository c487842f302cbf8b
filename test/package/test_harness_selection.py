"""Which tests `colcon test` runs: only those that need the install tree by default, the whole
suite with ITERPRIME_FULL_SUITE=1, and everything when pytest runs outside CTest. Collected in a
child pytest on two small files, so the check costs a collection, not a run.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FILES = ["test/package/test_colcon_build.py", "test/package/test_harness_domains.py"]


def _collected(**env: str) -> set[str]:
    child = {k: v for k, v in os.environ.items() if not k.startswith("ITERPRIME_")}
    child.update(env)
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:xdist", *FILES],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=child,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return {line.split("::")[0] for line in out.stdout.splitlines() if "::" in line}


@pytest.fixture(scope="module")
def install_tree(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("install"))


def test_colcon_test_runs_only_the_tests_that_need_the_install_tree(install_tree):
    assert _collected(ITERPRIME_INSTALL_TREE=install_tree) == {FILES[0]}


def test_the_full_suite_switch_runs_everything_under_colcon_test(install_tree):
    assert _collected(ITERPRIME_INSTALL_TREE=install_tree, ITERPRIME_FULL_SUITE="1") == set(FILES)


def test_pytest_outside_colcon_test_runs_everything():
    assert _collected() == set(FILES)
