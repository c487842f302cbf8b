"""One writer per output, and a resume that loses nothing: a second run or a second resume to
the same output is refused before it does work (an exclusive lock the OS releases when the
holder dies), the final move never replaces a file that appeared during the run, the temp sweep
never touches another output's or a live run's folder, --include-input never copies into the
replay's own topics, and a resumed --track run equals an uninterrupted one.

Real processes, real signals and real bags; the segmenters are STAND-INs (test_replay's
StubSegmenter, test_replay_track's TrueMaskStandIn): the replay, not the method, is under test.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from test_bags import COMMAND, IMAGE, T0, S, image_msg, write_bag
from test_offline_lose_nothing import N, _ids, _start_child, scene_bag
from test_replay import StubSegmenter, results
from test_replay_track import FRAME_NS, TrueMaskStandIn

from iterprime_ros.tools import cli
from iterprime_ros.tools.bags import (
    TEMP_SUFFIX,
    BagReader,
    BagWriteError,
    BagWriter,
    partial_name,
    string_message,
)
from iterprime_ros.tools.replay import (
    RESULT_TOPIC,
    TRACK_TOPIC,
    ReplayConfig,
    ReplayError,
    replay_bag,
    resume_marker,
)
from iterprime_ros.tools.world.sequences import generate_sequence, sequence_seeds
from iterprime_ros.tracking import TrackerSettings

STUB = {"segmenter": "slow stub"}  # replay_child.py's fingerprint


def _wait_for(proc, answered: int, also: str = "") -> list[str]:
    lines: list[str] = []
    while sum(1 for line in lines if line.startswith("[")) < answered or (
        also and not any(also in line for line in lines)
    ):
        line = proc.stdout.readline()
        assert line, f"replay ended early: {lines} {proc.stderr.read()}"
        lines.append(line)
    return lines


def test_a_second_run_to_the_same_output_is_refused_before_it_does_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = scene_bag(tmp_path / "in.mcap")
    out = tmp_path / "out.mcap"
    first = _start_child(src, out, 1)
    try:
        _wait_for(first, 1)
        stub = StubSegmenter()
        with pytest.raises(ReplayError, match=f"another run \\(process {first.pid}\\) is writing"):
            replay_bag(src, out, stub, ReplayConfig(fingerprint=STUB), echo=lambda _: None)
        assert stub.seen == [], "refused before answering anything"
        assert len(list(tmp_path.glob(f".out.mcap.*{TEMP_SUFFIX}"))) == 1, "the live run's only"
        # the command line refuses before loading models (none exist under this name)
        code = cli.main(["replay", str(src), str(out), "--vlp", str(tmp_path / "no-model")])
        assert code == 2 and "another run" in capsys.readouterr().err
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    # a killed holder never blocks the next run: the OS released its lock
    summary = replay_bag(src, out, StubSegmenter(), ReplayConfig(fingerprint=STUB), echo=print)
    assert summary.commands == N and _ids(out) == list(range(1, N + 1))
    assert not list(tmp_path.glob(f"*{TEMP_SUFFIX}")) and not list(tmp_path.glob(".*-lock"))


def test_a_second_resume_of_the_same_partial_is_refused(tmp_path: Path) -> None:
    src = scene_bag(tmp_path / "in.mcap")
    out = tmp_path / "out.mcap"
    first = _start_child(src, out, 2)
    _wait_for(first, 2)
    first.send_signal(signal.SIGINT)
    first.communicate(timeout=120)
    partial = partial_name(out)
    before = partial.read_bytes()
    resuming = _start_child(src, out, 3)  # takes over 2, answers 1 more, then holds
    try:
        _wait_for(resuming, 1, also="resuming:")
        with pytest.raises(ReplayError, match="another run"):
            replay_bag(src, out, StubSegmenter(), ReplayConfig(fingerprint=STUB))
        assert partial.read_bytes() == before, "the partial is untouched by the refused run"
    finally:
        resuming.send_signal(signal.SIGKILL)
        resuming.wait(timeout=60)
    summary = replay_bag(src, out, StubSegmenter(), ReplayConfig(fingerprint=STUB))
    assert summary.resumed == 2 and _ids(out) == list(range(1, N + 1))


def test_the_final_move_never_replaces_a_file_that_appeared_during_the_run(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out.mcap"
    writer = BagWriter(out)
    with pytest.raises(BagWriteError, match="appeared while this run was writing"), writer as w:
        w.add_topic(COMMAND, "std_msgs/msg/String")
        w.write(COMMAND, string_message("kept"), T0)
        out.write_bytes(b"someone else's file")
    assert out.read_bytes() == b"someone else's file"
    with BagReader(partial_name(out)) as kept:
        assert [m.topic for m in kept.messages()] == [COMMAND], "the messages are kept"
    # with overwrite, a bag that appeared is replaced (and only a bag)
    other = write_bag(tmp_path / "other.mcap", [(T0, IMAGE, image_msg(T0))])
    with BagWriter(tmp_path / "b.mcap", overwrite=True) as w:
        w.add_topic(COMMAND, "std_msgs/msg/String")
        w.write(COMMAND, string_message("new"), T0)
        os.link(other, tmp_path / "b.mcap")
    with BagReader(tmp_path / "b.mcap") as replaced:
        assert list(replaced.topics) == [COMMAND]


def test_the_temp_sweep_never_touches_another_outputs_or_a_live_folder(tmp_path: Path) -> None:
    dead = 2**22 + 12345  # above pid_max on this machine: no such process
    other = tmp_path / f".out.mcap.abc123{TEMP_SUFFIX}"  # a temp of out.mcap, not of "out"
    other.mkdir()
    (other / "owner.pid").write_text(f"{dead}\n")
    mine = tmp_path / f".out.xyz789{TEMP_SUFFIX}"  # a temp of "out" left by a killed run
    mine.mkdir()
    (mine / "owner.pid").write_text(f"{dead}\n")
    write_bag(tmp_path / "out", [(T0, COMMAND, string_message("x"))])
    assert other.is_dir() and not mine.exists()
    live = BagWriter(tmp_path / "live.mcap")
    with live:  # this process's own live folder survives a second writer's sweep
        folder = next(tmp_path.glob(f".live.mcap.*{TEMP_SUFFIX}"))
        with pytest.raises(BagWriteError), BagWriter(tmp_path / "live.mcap") as again:
            again.add_topic(COMMAND, "std_msgs/msg/String")
            again.write(COMMAND, string_message("y"), T0)
            assert folder.is_dir()
            (tmp_path / "live.mcap").write_bytes(b"x")  # ends the second one without a move
        (tmp_path / "live.mcap").unlink()
        assert folder.is_dir()


def test_include_input_never_copies_into_the_topics_the_replay_writes(tmp_path: Path) -> None:
    src = scene_bag(tmp_path / "in.mcap", n=4)
    first = tmp_path / "first.mcap"
    cfg = ReplayConfig(include_input=True)
    replay_bag(src, first, StubSegmenter(), cfg, echo=lambda _: None)
    assert [r.command_id for r in results(first)] == [1, 2, 3, 4]
    second = tmp_path / "second.mcap"  # a replay of a replay
    summary = replay_bag(first, second, StubSegmenter(), cfg, echo=lambda _: None)
    assert summary.commands == 4
    assert [r.command_id for r in results(second)] == [1, 2, 3, 4], "one result per command"
    with BagReader(second) as bag:
        assert bag.counts[IMAGE] == 4 and bag.counts[COMMAND] == 4  # the input is copied


# ----------------------------------------------------------------------------- --track resume


class _StopAfter(TrueMaskStandIn):
    """TrueMaskStandIn that is interrupted (as by Ctrl-C) when asked for command `stop`."""

    def __init__(self, seq, stop: int) -> None:
        super().__init__(seq)
        self.calls, self.stop = 0, stop

    def segment(self, image, command):  # noqa: ANN001, ANN201 - the stand-in's signature
        self.calls += 1
        if self.calls == self.stop:
            raise KeyboardInterrupt
        return super().segment(image, command)


def _track_bag(tmp_path: Path):
    seq = generate_sequence("leave", sequence_seeds("val", 1)[0])
    times = [T0 + t * FRAME_NS for t in range(len(seq))]
    events = [(t_ns, IMAGE, image_msg(t_ns, frame)) for t_ns, frame in zip(times, seq.frames)]
    for k, frame in enumerate((0, 2, 4, 6)):  # the target is in view on these frames
        t_ns = T0 + frame * FRAME_NS + FRAME_NS // 2
        events.append((t_ns, COMMAND, string_message(f"the object {k}")))
    return seq, write_bag(tmp_path / "in.mcap", events)


def _answers(path: Path) -> tuple[list, list]:
    with BagReader(path) as bag:
        got = {
            topic: [
                (
                    m.command_id,
                    m.header.stamp.sec * S + m.header.stamp.nanosec,
                    m.success,
                    m.track_status,
                    m.track_reason,
                    bytes(m.mask.data),
                )
                for m in (bag.deserialize(raw) for raw in bag.messages([topic]))
            ]
            for topic in (RESULT_TOPIC, TRACK_TOPIC)
        }
    return sorted(got[RESULT_TOPIC]), sorted(got[TRACK_TOPIC])


def test_a_resumed_track_run_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    seq, bag = _track_bag(tmp_path)

    def cfg() -> ReplayConfig:
        return ReplayConfig(track=True, track_settings=TrackerSettings(max_lost_s=0.1))

    whole = tmp_path / "whole.mcap"
    replay_bag(bag, whole, TrueMaskStandIn(seq), cfg(), echo=lambda _: None)
    cut = tmp_path / "cut.mcap"
    with pytest.raises(KeyboardInterrupt):
        replay_bag(bag, cut, _StopAfter(seq, 3), cfg(), echo=lambda _: None)
    assert partial_name(cut).exists() and resume_marker(cut).exists()
    with pytest.raises(ReplayError, match="made differently \\(track"):
        replay_bag(bag, cut, TrueMaskStandIn(seq), ReplayConfig(), echo=lambda _: None)
    summary = replay_bag(bag, cut, TrueMaskStandIn(seq), cfg(), echo=lambda _: None)
    assert summary.resumed == 2
    want, got = _answers(whole), _answers(cut)
    assert len(want[1]) > 10, "the track ran"
    print(f"--track resume: {len(got[0])}/{len(want[0])} results, {len(got[1])}/{len(want[1])} "
          "track messages, equal by command id and frame stamp: "
          f"{[(c, t) for c, t, *_ in got[1]] == [(c, t) for c, t, *_ in want[1]]}")  # fmt: skip
    assert got[0] == want[0]
    assert got[1] == want[1]
