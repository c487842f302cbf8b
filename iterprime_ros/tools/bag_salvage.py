"""Read what is still readable in a damaged bag: a truncated .mcap, a bad chunk, bad .db3 rows.

Why a second reader: rosbags reads a bag through its index (the .mcap summary, one SQL query
over the whole .db3), so a file cut by one byte cannot be opened at all and one bad chunk or
page ends the iteration -- every later message is lost, though it is intact on disk. Here the
.mcap is streamed record by record with the ``mcap`` library (no summary needed) and the .db3
is read row by row, so damage costs only the messages it touches. A damaged message whose
topic and time are still known comes back as a placeholder with ``damage`` set (the replay
fails the commands it affects, with the reason); everything else damaged is listed in
``problems``, with byte offsets or row ids.
"""

from __future__ import annotations

import sqlite3
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from mcap.exceptions import EndOfFile
from mcap.records import Channel, Chunk, DataEnd, Footer, Message, MessageIndex, Schema
from mcap.stream_reader import StreamReader, breakup_chunk

MCAP_MAGIC = b"\x89MCAP0\r\n"
_FOOTER_OPCODE = 0x02
_FOOTER_SIZE = 1 + 8 + 8 + 8 + 4  # opcode, length, summary start, summary offset start, crc


@dataclass
class SalvagedMessage:
    """One message; ``damage`` says why ``raw`` is unusable ("" when it is fine)."""

    topic: str
    msgtype: str
    timestamp_ns: int
    raw: bytes
    damage: str = ""


@dataclass
class TopicInfo:
    """Type, count and embedded definition of one topic."""

    msgtype: str
    msgcount: int = 0
    definition: str = ""
    encoding: str = ""


@dataclass
class Salvage:
    """Topics, times and problems of a damaged bag, and a way to stream its messages again."""

    path: Path
    files: list[Path]
    topics: dict[str, TopicInfo] = field(default_factory=dict)
    start_ns: int = 0
    end_ns: int = 0
    problems: list[str] = field(default_factory=list)

    def messages(self, topics: set[str] | None = None) -> Iterator[SalvagedMessage]:
        for f in self.files:
            reader = _mcap_messages if f.suffix == ".mcap" else _sqlite_messages
            for m in reader(f, [], {}):
                if topics is None or m.topic in topics or not m.topic:
                    yield m


def storage_files(path: Path) -> list[Path]:
    """The .mcap/.db3 files of a bag file or rosbag2 folder (in name order = split order)."""
    if path.is_file():
        return [path] if path.suffix in (".mcap", ".db3") else []
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in (".mcap", ".db3") and p.is_file())
    return []


def salvage(path: str | Path) -> Salvage:
    """One pass over the bag: topics, counts, times and every problem found on the way."""
    p = Path(path)
    out = Salvage(p, storage_files(p))
    first, last = None, None
    for f in out.files:
        reader = _mcap_messages if f.suffix == ".mcap" else _sqlite_messages
        for m in reader(f, out.problems, out.topics):
            if m.topic:
                info = out.topics.setdefault(m.topic, TopicInfo(m.msgtype))
                info.msgcount += 1
            first = m.timestamp_ns if first is None else min(first, m.timestamp_ns)
            last = m.timestamp_ns if last is None else max(last, m.timestamp_ns)
    out.start_ns, out.end_ns = first or 0, (last or 0) + 1
    return out


# ----------------------------------------------------------------------------- mcap


def _mcap_messages(
    path: Path, problems: list[str], topics: dict[str, TopicInfo]
) -> Iterator[SalvagedMessage]:
    """Stream an .mcap record by record: a truncated file is read up to the cut, a damaged
    chunk costs its own messages (placeholders from the chunk's message index when it is
    intact), and reading stops only where the record structure itself is broken.
    """
    schemas: dict[int, Schema] = {}
    channels: dict[int, tuple[str, str]] = {}
    lost_chunk: Chunk | None = None  # a damaged chunk whose message indexes may follow
    size = path.stat().st_size
    with path.open("rb") as fh:
        fh.seek(max(0, size - len(MCAP_MAGIC)))
        whole = fh.read() == MCAP_MAGIC  # a complete file ends with the magic again
        if whole:  # the chunk that defined the channels may be the damaged one
            schemas, channels = _mcap_summary_definitions(fh, size, topics)
        fh.seek(0)
        reader = StreamReader(fh, emit_chunks=True, validate_crcs=True)
        records = reader.records
        while True:
            at = fh.tell()
            try:
                record = next(records)
            except StopIteration:
                return
            except EndOfFile:
                problems.append(
                    f"{path} is truncated: it ends inside a record at byte {size} (its summary "
                    "is gone); read the messages before the cut, the rest is lost"
                )
                return
            except Exception as exc:  # noqa: BLE001 - a broken record header: nothing after it
                problems.append(
                    f"{path} is damaged at byte {at}: {_one_line(exc)}; read the messages "
                    "before it, the rest is lost"
                )
                return
            if isinstance(record, Schema):
                schemas[record.id] = record
            elif isinstance(record, Channel):
                schema = schemas.get(record.schema_id)
                msgtype = schema.name if schema is not None else ""
                channels[record.id] = (record.topic, msgtype)
                if schema is not None and record.topic not in topics:
                    topics[record.topic] = TopicInfo(
                        msgtype, 0, schema.data.decode("utf-8", "replace"), schema.encoding
                    )
            elif isinstance(record, Message):
                lost_chunk = None
                yield _mcap_message(record, channels)
            elif isinstance(record, Chunk):
                inner = _chunk_records(record, path, at, problems)
                lost_chunk = record if inner is None else None
                for r in inner or ():
                    if isinstance(r, Schema):
                        schemas[r.id] = r
                    elif isinstance(r, Channel):
                        channels[r.id] = (r.topic, schemas[r.schema_id].name)
                    elif isinstance(r, Message):
                        yield _mcap_message(r, channels)
            elif isinstance(record, MessageIndex) and lost_chunk is not None:
                topic, msgtype = channels.get(record.channel_id, ("", ""))
                for log_time, _offset in record.records:
                    yield SalvagedMessage(
                        topic,
                        msgtype,
                        int(log_time),
                        b"",
                        f"message lost in a damaged chunk of {path.name}",
                    )
            elif isinstance(record, (DataEnd, Footer)):
                if not whole:
                    problems.append(
                        f"{path} is truncated after its messages (its summary or end is cut "
                        "off); every message was read"
                    )
                return


def _chunk_records(chunk: Any, path: Path, at: int, problems: list[str]) -> list[Any] | None:
    """The records of a chunk, CRC checked; None (and a problem line) when it is damaged."""
    try:
        return breakup_chunk(chunk, validate_crc=True)
    except Exception as exc:  # noqa: BLE001 - CRC, decompression, bad lengths
        problems.append(
            f"{path}: damaged chunk at byte {at} ({_one_line(exc)}); its messages from bag "
            f"time {chunk.message_start_time} to {chunk.message_end_time} are lost"
        )
        return None


def _mcap_summary_definitions(
    fh: BinaryIO, size: int, topics: dict[str, TopicInfo]
) -> tuple[dict[int, Any], dict[int, tuple[str, str]]]:
    """Schemas and channels listed in the summary section at the end of a complete file.

    rosbags writes every definition into the first chunk, so one damaged byte there would
    leave every later message without a topic; the summary lists them again. Used only when
    its CRC (the footer's) checks out, so damage there never invents a topic; ({}, {}) else.
    """
    from mcap.reader import SeekingReader

    footer_at = size - len(MCAP_MAGIC) - _FOOTER_SIZE
    try:
        fh.seek(footer_at)
        footer = fh.read(_FOOTER_SIZE)
        if footer[0] != _FOOTER_OPCODE:
            return {}, {}
        start, _offsets, crc = struct.unpack_from("<QQI", footer, 9)
        if not 0 < start < footer_at:
            return {}, {}
        fh.seek(start)
        if crc and zlib.crc32(fh.read(footer_at + _FOOTER_SIZE - 4 - start)) != crc:
            return {}, {}
        fh.seek(0)  # the reader checks the leading magic first
        summary = SeekingReader(fh).get_summary()
    except Exception:  # noqa: BLE001 - no usable summary: chunks alone define the channels
        return {}, {}
    if summary is None:
        return {}, {}
    schemas = dict(summary.schemas)
    channels: dict[int, tuple[str, str]] = {}
    for cid, channel in summary.channels.items():
        schema = schemas.get(channel.schema_id)
        channels[cid] = (channel.topic, schema.name if schema is not None else "")
        if schema is not None and channel.topic not in topics:
            topics[channel.topic] = TopicInfo(
                schema.name, 0, schema.data.decode("utf-8", "replace"), schema.encoding
            )
    return schemas, channels


def _mcap_message(record: Any, channels: dict[int, tuple[str, str]]) -> SalvagedMessage:
    topic, msgtype = channels.get(record.channel_id, ("", ""))
    return SalvagedMessage(topic, msgtype, int(record.log_time), bytes(record.data))


# ----------------------------------------------------------------------------- sqlite


def _sqlite_messages(
    path: Path, problems: list[str], topics: dict[str, TopicInfo]
) -> Iterator[SalvagedMessage]:
    """Read a .db3 one row at a time (ids in time order from the timestamp index, which lives
    in other pages than the rows): a damaged page costs only the rows stored in it.
    """
    try:
        con = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    except sqlite3.Error as exc:
        problems.append(f"{path}: cannot open: {exc}")
        return
    try:
        try:
            kinds = {
                int(i): (str(n), str(t))
                for i, n, t in con.execute("SELECT id, name, type FROM topics")
            }
        except sqlite3.Error as exc:
            problems.append(f"{path}: the topics table is damaged ({exc}); nothing can be read")
            return
        for name, msgtype in kinds.values():
            topics.setdefault(name, TopicInfo(msgtype))
        rows = _sqlite_row_ids(con, path, problems)
        lost: list[tuple[int, int]] = []  # consecutive rows whose topic is unreadable
        for row_id, stamp in rows:
            try:
                tid, ts, data = con.execute(
                    "SELECT topic_id, timestamp, data FROM messages WHERE id = ?", (row_id,)
                ).fetchone()
                name, msgtype = kinds.get(int(tid), ("", ""))
                _report_lost(path, lost, problems)
                yield SalvagedMessage(
                    name,
                    msgtype,
                    int(stamp or 0),
                    bytes(data),
                    _row_damage(path, row_id, tid, ts, name),
                )
                continue
            except (sqlite3.Error, TypeError) as exc:
                reason = f"row {row_id} of {path.name} is damaged ({exc})"
            try:  # the small columns may live in a readable page when the blob does not
                (tid,) = con.execute(
                    "SELECT topic_id FROM messages WHERE id = ?", (row_id,)
                ).fetchone()
                name, msgtype = kinds[int(tid)]
            except (sqlite3.Error, TypeError, KeyError, ValueError):
                name, msgtype = "", ""  # unknown topic: a placeholder the reader can act on
            if stamp is None:
                problems.append(f"{path}: {reason}; its time is unreadable, skipped")
                continue
            if not name:
                lost.append((row_id, stamp))
            else:
                _report_lost(path, lost, problems)
            yield SalvagedMessage(name, msgtype, int(stamp), b"", reason)
        _report_lost(path, lost, problems)
    finally:
        con.close()


def _report_lost(path: Path, lost: list[tuple[int, int]], problems: list[str]) -> None:
    """One problem line for a run of rows whose page is unreadable (their bag times known)."""
    if not lost:
        return
    (first, t0), (last, t1) = lost[0], lost[-1]
    rows = f"row {first}" if first == last else f"rows {first}-{last}"
    problems.append(
        f"{path}: {rows} damaged (database disk image is malformed): {len(lost)} message(s) "
        f"of unreadable topic at bag times {t0} .. {t1} are lost; if commands were among them "
        "they get no result"
    )
    lost.clear()


def _sqlite_row_ids(
    con: sqlite3.Connection, path: Path, problems: list[str]
) -> list[tuple[int, int | None]]:
    """(row id, timestamp) in time order: from the timestamp index, else by probing row ids."""
    by_time = "SELECT timestamp, id FROM messages INDEXED BY timestamp_idx ORDER BY timestamp"
    try:
        return _placed([(int(i), t) for t, i in con.execute(by_time)])
    except sqlite3.Error as exc:
        problems.append(f"{path}: the timestamp index is damaged ({exc}); reading row by row")
    try:
        (top,) = con.execute("SELECT max(id) FROM messages").fetchone()
    except sqlite3.Error:
        top = None
    if top is None:
        return []
    found: list[tuple[int, int | None]] = []
    for row_id in range(1, int(top) + 1):
        try:
            row = con.execute("SELECT timestamp FROM messages WHERE id = ?", (row_id,)).fetchone()
        except sqlite3.Error:
            row = (None,)
        if row is not None:
            found.append((row_id, row[0] if isinstance(row[0], int) else None))
    found.sort(key=lambda r: (r[1] is None, r[1] or 0))
    return found


def _row_damage(path: Path, row_id: int, topic_id: Any, stamp: Any, name: str) -> str:
    """Why a row that reads fine cannot be used as it is ("" when it can)."""
    if not name:
        return f"row {row_id} of {path.name} names topic id {topic_id}, not in its topics table"
    if not isinstance(stamp, int):
        return f"row {row_id} of {path.name} has the timestamp {str(stamp)[:40]!r}, not an integer"
    return ""


def _placed(rows: list[tuple[int, Any]]) -> list[tuple[int, int | None]]:
    """(row id, time) in time order; a row whose time is not an integer takes the time of the
    row written before it (row ids follow the writing order), so it is read where it was written.
    """
    if all(isinstance(t, int) for _, t in rows):
        return rows
    timed = sorted((i, t) for i, t in rows if isinstance(t, int))
    placed: list[tuple[int, int | None]] = []
    for i, t in rows:
        if not isinstance(t, int):
            before = [tt for ii, tt in timed if ii < i]
            t = before[-1] if before else (timed[0][1] if timed else 0)
        placed.append((i, t))
    placed.sort(key=lambda r: (r[1], r[0]))
    return placed


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
