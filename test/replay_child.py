"""A replay in its own process for the interruption tests (real signals, real files).

    python replay_child.py IN_BAG OUT_BAG [--restart]

Answers with test_replay.StubSegmenter, slowed down (SLOW_S per command) so a signal lands
mid-run; prints the replay's lines as they happen (the test waits for them, not for time).
Exit: 0 done, 130 SIGINT, 143 SIGTERM.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_replay import StubSegmenter  # noqa: E402

from iterprime_ros.tools.replay import ReplayConfig, _Terminated, replay_bag  # noqa: E402

SLOW_S = 0.3


class SlowStub(StubSegmenter):
    def segment(self, image, command):  # noqa: ANN001, ANN201 - the stub's signature
        time.sleep(SLOW_S)
        return super().segment(image, command)


def main() -> int:
    in_bag, out_bag = sys.argv[1], sys.argv[2]
    cfg = ReplayConfig(restart="--restart" in sys.argv, fingerprint={"segmenter": "slow stub"})
    try:
        summary = replay_bag(in_bag, out_bag, SlowStub(), cfg, echo=lambda s: print(s, flush=True))
    except _Terminated:
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        return 130
    print(f"done: {summary.commands} commands, {summary.resumed} resumed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
