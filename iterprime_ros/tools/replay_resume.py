"""Resuming an interrupted replay: the marker that says how the partial bag was made, the
check that a new run may continue it, and taking its finished answers over.

Why: a replay of a long bag can be stopped (Ctrl-C, SIGTERM, a full disk) and must continue
where it stopped without mixing two configurations in one output bag.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable

from .bags import (
    BagError,
    BagReader,
    BagWriter,
    check_replaceable,
    current_segmentation,
    partial_name,
)
from .replay_config import (
    CENTROID_TOPIC,
    MASK_TOPIC,
    RESULT_TOPIC,
    TRACK_TOPIC,
    ReplayConfig,
    ReplayError,
    ReplaySummary,
)

log = logging.getLogger(__name__)


def resume_marker(out_bag: str | Path) -> Path:
    """The file beside an interrupted run's partial bag that says what made it."""
    partial = partial_name(out_bag)
    return partial.with_name(partial.name + ".resume.json")


def _fingerprint(in_bag: Path, cfg: ReplayConfig) -> dict[str, Any]:
    st = in_bag.stat()
    size = (
        st.st_size
        if in_bag.is_file()
        else sum(p.stat().st_size for p in in_bag.rglob("*") if p.is_file())
    )
    return {
        "input": str(in_bag.resolve()),
        "input_bytes": size,
        "topics": [cfg.image_topic, cfg.command_topic, cfg.depth_topic, cfg.camera_info_topic],
        "max_image_age_s": cfg.max_image_age_s,
        "depth": [cfg.depth_sync_tolerance_s, cfg.depth_erosion_px, cfg.image_rectified],
        "max_image_pixels": cfg.max_image_pixels,
        "include_input": cfg.include_input,
        "storage": cfg.storage or "",
        "track": [cfg.track, cfg.track_proposals_every, _plain(cfg.track_settings)],
        "settings": cfg.fingerprint,
    }


def _plain(value: Any) -> Any:
    """A settings dataclass (or None) as JSON values, so the marker compares like for like."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    return json.loads(json.dumps(value, default=str))


def _resume_source(in_bag: Path, out_bag: Path, cfg: ReplayConfig, echo: Callable) -> Path | None:
    """The partial bag an interrupted run left, when this run continues it (same input and
    settings); ReplayError when it was made differently (never discarded silently).
    """
    partial, marker = partial_name(out_bag), resume_marker(out_bag)
    if not partial.exists():
        return None
    if cfg.restart:
        try:
            check_replaceable(partial, [in_bag])
        except BagError as exc:
            raise ReplayError(str(exc)) from None
        _remove(partial)
        marker.unlink(missing_ok=True)
        echo(f"note: --restart: discarded the partial results in {partial}")
        return None
    try:
        made = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        made = None
    now = _fingerprint(in_bag, cfg)
    if made != now:
        diff = (
            "no readable resume marker " + str(marker)
            if not isinstance(made, dict)
            else ", ".join(k for k in now if made.get(k) != now[k])
        )
        raise ReplayError(
            f"{partial} holds results of an interrupted run made differently ({diff}); "
            "rerun with the same input and settings to resume, or --restart to discard them"
        )
    return partial


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _take_over(partial: Path, out: BagWriter, run: Any) -> int:
    """Copy the finished results of an interrupted run into the new bag; returns how many.

    With --track, the track messages of every command before the last one answered are
    copied; the last one's track is made again (the run segments that command once more and
    follows it over the later images), so the resumed bag holds the same track messages as an
    uninterrupted run, none twice.
    """
    with BagReader(partial, run.cfg.limits) as old:
        run.done.update(_answered(old))
        last = max(run.done, default=0)
        run.redo_from = _exchange_start(old, last)
        for m in old.messages([RESULT_TOPIC, MASK_TOPIC, CENTROID_TOPIC, TRACK_TOPIC]):
            if m.topic in (RESULT_TOPIC, TRACK_TOPIC):
                try:
                    msg = old.deserialize(m)
                except BagError:
                    continue  # a result: that command is simply answered again
                if m.topic == TRACK_TOPIC and (run.track is None or msg.command_id >= last):
                    continue
                # written again, not copied: the partial may hold an older definition
                out.write(m.topic, current_segmentation(msg), m.timestamp_ns)
            else:  # standard messages (mask image, centroid point): the bytes stay valid
                out.write_raw(m.topic, m.raw, m.timestamp_ns)
            run._last_out_ns = max(run._last_out_ns, m.timestamp_ns)
    return len(run.done)


def _exchange_start(old: BagReader, last: int) -> int:
    """The first finished command that the resumed run answers again, writing nothing, so that
    its dialogue state stands where the interrupted run left it after command `last`.

    Why again rather than rebuilt from the results: the state holds what no result message
    carries (the candidates' colours, the question's noun, the refused objects, the frame they
    were found on), and answering the same commands on the same images at the same bag times
    makes exactly the same state. It is enough to start at the last new command the models
    answered with candidates (``in_reply_to`` 0): the state after it depends on it alone, and
    the later replies and corrections of its exchange follow from it. 0 when there is none:
    the state then holds nothing a later command could refer to.
    """
    roots = [0]
    for m in old.messages([RESULT_TOPIC]):
        try:
            result = old.deserialize(m)
        except BagError:
            continue
        # a result written before the conversation fields has none: it starts no exchange
        if int(getattr(result, "in_reply_to", 0)) == 0 and getattr(result, "candidates", None):
            roots.append(int(result.command_id))
    return max(r for r in roots if r <= last)


def _answered(old: BagReader) -> dict[int, bool]:
    """command_id -> success of every readable result in a partial bag."""
    done: dict[int, bool] = {}
    for m in old.messages([RESULT_TOPIC]):
        try:
            result = old.deserialize(m)
        except BagError:
            continue
        done[int(result.command_id)] = bool(result.success)
    return done


def _keep_partial(
    writer: BagWriter,
    in_bag: Path,
    cfg: ReplayConfig,
    summary: ReplaySummary,
    echo: Callable[[str], None],
) -> None:
    """After an interruption: say where the finished results are and write the resume marker."""
    if writer.kept is None:
        echo("interrupted before any result was written: nothing kept")
        return
    marker = resume_marker(summary.output)
    tmp = marker.with_name(f".{marker.name}.{os.getpid()}")
    try:
        tmp.write_text(json.dumps(_fingerprint(in_bag, cfg), indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, marker)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        echo(
            f"error: cannot write the resume marker {marker}: {exc.strerror or exc}; the results "
            f"in {writer.kept} are kept, but only --restart can use that name again"
        )
    try:  # what the kept bag holds (a full disk may have cut the last results off)
        with BagReader(writer.kept, cfg.limits) as kept:
            done = len(_answered(kept))
    except BagError:
        done = 0
    echo(
        f"{'interrupted' if summary.interrupted else 'stopped'}: {done} finished result(s) "
        f"kept in {writer.kept}; run the same command "
        "again to resume (--restart to start over)"
    )
