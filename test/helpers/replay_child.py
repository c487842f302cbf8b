"""A replay in its own process for the interruption tests (real signals, real files).

    python test/helpers/replay_child.py IN OUT [--restart] [--hold-after K] [--overlays DIR]
        [--max-image-pixels N]

Answers with test_replay.StubSegmenter; with --hold-after K the (K+1)-th command blocks until a
signal arrives (at most HOLD_S), so a signal the test sends after reading K answers always
lands mid-run, however slowly the machine runs. Prints the replay's lines as they happen (the
test waits for them, not for time). Exit: 0 done, 130 SIGINT, 143 SIGTERM.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

from test_replay import StubSegmenter  # noqa: E402

from iterprime_ros.tools.replay import ReplayConfig, _Terminated, replay_bag  # noqa: E402

HOLD_S = 600.0  # a safety bound only: the test's signal ends the hold


class HoldingStub(StubSegmenter):
    """Answers the first `hold_after` commands, then waits for the test's signal."""

    def __init__(self, hold_after: int | None) -> None:
        super().__init__()
        self.hold_after = hold_after

    def segment(self, image, command):  # noqa: ANN001, ANN201 - the stub's signature
        if self.hold_after is not None and len(self.seen) >= self.hold_after:
            deadline = time.monotonic() + HOLD_S
            while time.monotonic() < deadline:  # a signal handler raises out of this sleep
                time.sleep(0.05)
        return super().segment(image, command)


def main() -> int:
    # Ctrl-C as a terminal delivers it, even when the test run itself was started in the
    # background (bash starts `cmd &` with SIGINT ignored, and a child inherits that): the
    # test's SIGINT was then ignored and the replay ran to its end.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    in_bag, out_bag = sys.argv[1], sys.argv[2]
    hold = (
        int(sys.argv[sys.argv.index("--hold-after") + 1]) if "--hold-after" in sys.argv else None
    )
    overlays = (
        Path(sys.argv[sys.argv.index("--overlays") + 1]) if "--overlays" in sys.argv else None
    )
    pixels = (
        {"max_image_pixels": int(sys.argv[sys.argv.index("--max-image-pixels") + 1])}
        if "--max-image-pixels" in sys.argv
        else {}
    )
    cfg = ReplayConfig(
        restart="--restart" in sys.argv,
        fingerprint={"segmenter": "slow stub"},
        overlays=overlays,
        **pixels,
    )
    stub = HoldingStub(hold)
    try:
        summary = replay_bag(in_bag, out_bag, stub, cfg, echo=lambda s: print(s, flush=True))
    except _Terminated:
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        return 130
    print(f"done: {summary.commands} commands, {summary.resumed} resumed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
