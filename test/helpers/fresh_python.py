"""Run a snippet in a fresh interpreter: what it imports is not hidden by what the test session
already imported (the layering tests check which modules an import loads).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def fresh_python(code: str, cwd: Path) -> str:
    """Run `code` with `python -c` in `cwd`; it must succeed. Returns its stripped stdout."""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=cwd
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()
