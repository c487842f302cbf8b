"""Reading rosbag2 files (.mcap, .db3, bag directories) and ROS 1 bags without a ROS install.

Why one reader: replay, the player, the demo and eval must all turn every failure into the same
one-line ``BagError`` naming the bag, check what they read the same way (``bag_check``: CRCs,
declared sizes), and fall back on reading a damaged file message by message (``bag_salvage``)
so that damage costs only the messages it touches.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from rosbags.interfaces import Connection, Qos

from .bag_check import ReadLimits, check_storage
from .bag_salvage import salvage, storage_files
from .bag_types import (
    CANDIDATE_TYPE,
    SEGMENTATION_TYPE,
    STORAGE_IDS,
    BagError,
    _one_line,
    typestore,
)

# --------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class BagMessage:
    """One stored message: raw serialized bytes plus where and when it was recorded."""

    topic: str
    msgtype: str
    timestamp_ns: int
    raw: bytes
    connection: Connection | None = field(default=None, repr=False, compare=False)
    damage: str = ""  # set when the bytes are lost (a damaged chunk or row): why


class BagReader:
    """Context manager over a rosbag2 directory, a single .mcap/.db3 file or ROS 1 .bag file(s).

    Every failure to open or read raises BagError with the path in the message.
    Message types come from the definitions embedded in the bag, falling back on
    ``typestore()`` (Kilted + Segmentation) for bags recorded without them.
    """

    def __init__(self, path: str | os.PathLike[str], limits: ReadLimits | None = None) -> None:
        self.path = Path(path)
        self.limits = limits or ReadLimits()
        self._reader: Any = None
        self._salvage: Any = None  # bag_salvage.Salvage when rosbags cannot read the file
        self._store: Any = None
        self.problems: list[str] = []  # damage found while opening or reading (one line each)

    def __enter__(self) -> "BagReader":
        from rosbags.highlevel import AnyReader

        if not self.path.exists():
            raise BagError(f"bag not found: {self.path}")
        if self.path.is_file() and self.path.suffix not in (*STORAGE_IDS, ".bag"):
            raise BagError(
                f"not a bag: {self.path} (expected a rosbag2 directory, .mcap, .db3 or .bag)"
            )
        found = check_storage(self.path, self.limits)  # BagError over the read limit
        if found:  # a CRC mismatch, rows rosbags would drop: read message by message
            self.problems.extend(found)
            self._open_salvage(found[0])
            return self
        try:
            reader = AnyReader([self.path], default_typestore=typestore())
            reader.open()
        except Exception as exc:  # noqa: BLE001 - rosbags raises many types; all mean "unreadable"
            self._open_salvage(f"cannot open bag {self.path}: {_one_line(exc)}")
            return self
        self._reader = reader
        return self

    def _open_salvage(self, why: str) -> None:
        """Fall back on reading message by message (bag_salvage); BagError when that finds
        nothing either.
        """
        if not storage_files(self.path):
            raise BagError(why)
        try:
            found = salvage(self.path)
        except Exception as exc:  # noqa: BLE001
            raise BagError(f"{why}; reading it message by message failed too: {exc}") from exc
        if not found.topics:
            raise BagError(f"{why} ({'; '.join(found.problems) or 'no messages'})")
        self._salvage = found
        self.problems.extend(found.problems)

    def __exit__(self, *exc: object) -> None:
        reader, self._reader = self._reader, None
        self._salvage = None
        if reader is not None:
            try:
                reader.close()
            except Exception:  # noqa: BLE001 - closing a half-broken file must not mask the real error
                pass

    @property
    def _open(self) -> Any:
        if self._reader is None:
            raise BagError(f"bag {self.path} is not open (use 'with BagReader(path) as bag')")
        return self._reader

    @property
    def salvaged(self) -> bool:
        """True when the bag is read message by message because it is damaged."""
        return self._salvage is not None

    @property
    def topics(self) -> dict[str, str]:
        """Topic -> message type ("" when one topic holds several types)."""
        if self._salvage is not None:
            return {name: info.msgtype for name, info in self._salvage.topics.items()}
        return {name: info.msgtype or "" for name, info in self._open.topics.items()}

    @property
    def counts(self) -> dict[str, int]:
        """Topic -> number of messages."""
        if self._salvage is not None:
            return {name: info.msgcount for name, info in self._salvage.topics.items()}
        return {name: info.msgcount for name, info in self._open.topics.items()}

    @property
    def start_ns(self) -> int:
        if self._salvage is not None:
            return int(self._salvage.start_ns)
        return int(self._open.start_time)

    @property
    def end_ns(self) -> int:
        if self._salvage is not None:
            return int(self._salvage.end_ns)
        return int(self._open.end_time)

    @property
    def typestore(self) -> Any:
        """The types this bag's messages are decoded with (its embedded definitions)."""
        if self._salvage is not None:
            return self._salvage_store()
        return self._open.typestore

    @property
    def is_ros1(self) -> bool:
        if self._salvage is not None:
            return False
        return not self._open.is2

    def connections_qos(self, topic: str) -> list[Qos]:
        """QoS profiles the recorded publishers offered on a topic ([] when not recorded)."""
        if self._salvage is not None:
            return []
        out: list[Qos] = []
        for conn in self._open.connections:
            if conn.topic == topic:
                out.extend(getattr(conn.ext, "offered_qos_profiles", None) or [])
        return out

    def messages(self, topics: Iterable[str] | None = None) -> Iterator[BagMessage]:
        """Messages in time order, optionally only those on some topics.

        Damage part-way through switches to reading message by message from where rosbags
        stopped (bag_salvage): the problem goes to ``problems``, a message whose bytes are lost
        comes back with ``damage`` set, and everything still readable is yielded.
        """
        wanted = set(topics) if topics is not None else None
        if self._salvage is not None:
            yield from self._salvaged(wanted, None, 0)
            return
        reader = self._open
        conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
        if wanted is not None and not conns:
            return
        last_ns, same = None, 0  # where rosbags stopped: time and messages yielded at that time
        try:
            for conn, stamp, raw in reader.messages(connections=conns):
                stamp = int(stamp)
                same = same + 1 if stamp == last_ns else 1
                last_ns = stamp
                yield BagMessage(conn.topic, conn.msgtype, stamp, bytes(raw), conn)
        except BagError:
            raise
        except Exception as exc:  # noqa: BLE001
            why = f"bag {self.path} is damaged: {_one_line(exc)}"
            try:
                self._open_salvage(why)
            except BagError:
                raise BagError(why) from exc
            self.problems.append(f"{why}; reading on message by message")
            yield from self._salvaged(wanted, last_ns, same)

    def _salvaged(
        self, wanted: set[str] | None, after_ns: int | None, same: int
    ) -> Iterator[BagMessage]:
        """Salvaged messages, skipping those rosbags already gave (up to after_ns)."""
        for m in self._salvage.messages(wanted):
            if after_ns is not None:
                if m.timestamp_ns < after_ns:
                    continue
                if m.timestamp_ns == after_ns and same > 0:
                    same -= 1
                    continue
            yield BagMessage(m.topic, m.msgtype, m.timestamp_ns, m.raw, None, m.damage)

    def _salvage_store(self) -> Any:
        """typestore() plus the definitions embedded in the damaged file (best effort)."""
        if self._store is None:
            from rosbags.typesys import Stores, get_types_from_msg, get_typestore

            store = get_typestore(Stores.ROS2_KILTED)
            own = typestore().fielddefs  # Candidate too: Segmentation's definition names it
            store.register({name: own[name] for name in (CANDIDATE_TYPE, SEGMENTATION_TYPE)})
            for name, info in self._salvage.topics.items():
                if info.definition and info.encoding in ("ros2msg", "") and info.msgtype:
                    try:
                        store.register(get_types_from_msg(info.definition, info.msgtype))
                    except Exception:  # noqa: BLE001 - the built-in definition is used instead
                        pass
            self._store = store
        return self._store

    def deserialize(self, message: BagMessage) -> Any:
        """Raw bytes -> rosbags message object; a corrupt message raises BagError naming it."""
        at = (message.timestamp_ns - self.start_ns) / 1e9
        where = f"{message.msgtype} message on {message.topic} at +{at:.3f} s"
        if message.damage:
            raise BagError(f"damaged {where} (bag time {message.timestamp_ns}): {message.damage}")
        try:
            if self._salvage is not None:
                return self._salvage_store().deserialize_cdr(message.raw, message.msgtype)
            return self._open.deserialize(message.raw, message.msgtype)
        except Exception as exc:  # noqa: BLE001 - truncated CDR gives struct/index errors, not SerdeError
            raise BagError(
                f"corrupt {where} (bag time {message.timestamp_ns}): {_one_line(exc)}"
            ) from exc

    def cdr(self, message: BagMessage) -> bytes:
        """The message as ROS 2 CDR bytes (ROS 1 bags are converted), e.g. for rclpy."""
        if message.damage:
            raise BagError(
                f"damaged {message.msgtype} message on {message.topic}: {message.damage}"
            )
        if not self.is_ros1:
            return message.raw
        try:
            return bytes(self._open.typestore.ros1_to_cdr(message.raw, message.msgtype))
        except Exception as exc:  # noqa: BLE001
            raise BagError(
                f"corrupt {message.msgtype} message on {message.topic}: {_one_line(exc)}"
            ) from exc


# --------------------------------------------------------------------------------------


def bag_summary(path: str | os.PathLike[str], limits: ReadLimits | None = None) -> str:
    """A short `ros2 bag info`-like text: duration, and per topic its type and count."""
    with BagReader(path, limits) as bag:
        duration = (
            max(0, bag.end_ns - bag.start_ns) / 1e9
            if bag.counts and sum(bag.counts.values())
            else 0.0
        )
        size = _size(Path(path))
        lines = [
            f"bag:      {path}",
            f"size:     {size / 1024:.0f} KiB",
            f"duration: {duration:.2f} s",
            f"messages: {sum(bag.counts.values())}",
        ]
        width = max((len(t) for t in bag.topics), default=0)
        for topic, msgtype in sorted(bag.topics.items()):
            lines.append(f"  {topic:<{width}}  {bag.counts[topic]:>5}  {msgtype}")
    return "\n".join(lines)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size
