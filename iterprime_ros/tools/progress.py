"""A one-line stage indicator for long CLI commands (loading models, proposals, pass k/3).

Why: on a CPU a first command takes tens of seconds; a silent terminal looks hung. The line is
drawn only on a terminal (a pipe or a log file gets nothing), rewritten in place,
and cleared when the command ends, so `--json` output stays clean.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

STAGE_NAMES = {"proposals": "mask proposals", "image_encoding": "image encoding"}


class StageLine:
    """Shows `[iterprime] <stage> (12.3 s)` on `stream` when it is a terminal (or `force`)."""

    def __init__(self, stream: TextIO | None = None, force: bool = False, passes: int = 3) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = force or bool(getattr(self.stream, "isatty", lambda: False)())
        self.passes = passes
        self._start = time.monotonic()
        self._width = 0

    def show(self, text: str) -> None:
        if not self.enabled:
            return
        line = f"[iterprime] {text} ({time.monotonic() - self._start:.1f} s)"
        self.stream.write("\r" + line.ljust(self._width))
        self.stream.flush()
        self._width = len(line)

    def pipeline(self, stage: str, igrs_pass: int) -> None:
        """A Segmenter progress callback: (stage, IGRS pass from 1; 0 outside IGRS)."""
        if stage == "igrs":
            self.show(f"text pass {igrs_pass}/{self.passes}")
        else:
            self.show(STAGE_NAMES.get(stage, stage.replace("_", " ")))

    def done(self) -> None:
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0
