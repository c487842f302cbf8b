"""Integrity and size checks of bags: MCAP CRCs written and verified, declared sizes bounded.

Why: rosbags writes every MCAP CRC as 0 ("not computed"), so one flipped byte in an output bag
changes a mask pixel or a command's text and no reader notices; and a reader trusts the sizes
a file declares, so a 32 KB file that declares a 1 GiB chunk makes it allocate 1 GiB. Here the
files the tools write get their chunk, data-section and summary CRCs filled in (the bytes
rosbags wrote stay as they are), and every file the tools read is walked once, record by
record, before anything else reads it: a declared size over the read limit is refused with a
one-line ``BagError`` naming the bag, the byte offset (the row id in a .db3) and the limit;
a CRC mismatch or a row that cannot be placed is returned as a problem line, and the reader
then reads the file message by message (bag_salvage), so the damage costs only what it touches.

The MCAP layout used here is the published format (mcap.dev/spec): a record is an opcode byte,
a little-endian uint64 length and the body; a chunk body starts with start time, end time,
uncompressed size (uint64 each) and the uncompressed CRC (uint32).
"""

from __future__ import annotations

import io
import sqlite3
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..image_size import DEFAULT_MAX_IMAGE_PIXELS, read_limit_bytes
from .bag_salvage import storage_files
from .bag_types import BagError

__all__ = ["ReadLimits", "check_storage", "fill_mcap_crcs", "read_limit_bytes"]

MCAP_MAGIC = b"\x89MCAP0\r\n"
_HEAD = struct.Struct("<BQ")  # opcode, record length
_CHUNK, _DATA_END, _FOOTER = 0x06, 0x0F, 0x02
_FOOTER_BODY = 20  # summary start, summary offset start (uint64), summary CRC (uint32)
_BLOCK = 1 << 20


@dataclass(frozen=True)
class ReadLimits:
    """How many bytes one stored message, record or decompressed chunk may declare (0: any)."""

    max_bytes: int = read_limit_bytes(DEFAULT_MAX_IMAGE_PIXELS)

    @classmethod
    def for_pixels(cls, max_image_pixels: int) -> "ReadLimits":
        """The limit that goes with an image-size limit (image_size.read_limit_bytes)."""
        return cls(read_limit_bytes(max_image_pixels))

    def check(self, path: Path, where: str, declared: int, what: str) -> None:
        """BagError when `declared` bytes are over the limit; the message is one line."""
        if self.max_bytes and declared > self.max_bytes:
            raise BagError(
                f"{path}: {what} at {where} declares {declared} bytes, over the read limit of "
                f"{self.max_bytes} bytes; refused before reading it (the limit follows "
                "--max-image-pixels / max_image_pixels: raise it only for a bag you trust)"
            )


def check_storage(path: Path, limits: ReadLimits) -> list[str]:
    """Check every storage file of a bag: BagError over the limit, else the problems found."""
    problems: list[str] = []
    for f in storage_files(path):
        problems += check_mcap(f, limits) if f.suffix == ".mcap" else check_db3(f, limits)
    return problems


# ----------------------------------------------------------------------------- reading mcap


def check_mcap(path: Path, limits: ReadLimits) -> list[str]:
    """Walk an .mcap record by record: sizes against the limit, every CRC that is not 0.

    A truncated or structurally broken file is left to the reader (it says where); only what
    can be checked is checked. Reads each record once; a chunk's body is decompressed with the
    declared size as a hard bound.
    """
    size = path.stat().st_size
    problems: list[str] = []
    with path.open("rb") as fh:
        magic = fh.read(len(MCAP_MAGIC))
        if magic != MCAP_MAGIC:
            return problems
        crc, pos, data_end = zlib.crc32(magic), len(magic), False
        while pos + _HEAD.size <= size:
            head = fh.read(_HEAD.size)
            opcode, length = _HEAD.unpack(head)
            limits.check(path, f"byte {pos}", length, f"a record (opcode 0x{opcode:02x})")
            if pos + _HEAD.size + length > size:
                break  # truncated: the reader reads up to the cut and says so
            if data_end or opcode == _DATA_END:
                if not data_end:
                    problems += _check_data_end(path, pos, fh.read(length), crc)
                else:
                    fh.seek(length, io.SEEK_CUR)
                data_end = True
            else:
                body = fh.read(length)
                crc = zlib.crc32(body, zlib.crc32(head, crc))
                if opcode == _CHUNK:
                    problems += _check_chunk(path, pos, body, limits)
            pos += _HEAD.size + length
        if data_end:
            problems += _check_summary(path, fh, size)
    return problems


def _check_data_end(path: Path, pos: int, body: bytes, crc: int) -> list[str]:
    stored = struct.unpack_from("<I", body)[0] if len(body) >= 4 else 0
    if stored and stored != crc:
        return [
            f"{path}: the data section fails its CRC check (stored {stored:08x}, computed "
            f"{crc:08x}): bytes before byte {pos} changed after it was written"
        ]
    return []


def _chunk_parts(body: bytes) -> tuple[int, int, int, int, str, bytes]:
    """(start time, end time, uncompressed size, CRC, compression, compressed records)."""
    start, end, usize, crc = struct.unpack_from("<QQQI", body, 0)
    (clen,) = struct.unpack_from("<I", body, 28)
    compression = body[32 : 32 + clen].decode("utf-8", "replace")
    (rlen,) = struct.unpack_from("<Q", body, 32 + clen)
    data = body[40 + clen : 40 + clen + rlen]
    return start, end, usize, crc, compression, data


def _check_chunk(path: Path, pos: int, body: bytes, limits: ReadLimits) -> list[str]:
    """The chunk's declared sizes against the limit, then its CRC (when one was written)."""
    try:
        start, end, usize, stored, compression, data = _chunk_parts(body)
    except (struct.error, UnicodeDecodeError):
        return [f"{path}: the chunk at byte {pos} is malformed; its messages are lost"]
    where = f"byte {pos}"
    limits.check(path, where, usize, "a chunk (decompressed size)")
    limits.check(path, where, _frame_size(compression, data), "a chunk's compressed frame")
    lost = f"its messages from bag time {start} to {end} are lost"
    try:
        raw = decompress(compression, data, usize)
    except Exception as exc:  # noqa: BLE001 - zstd/lz4 raise their own types
        return [f"{path}: the chunk at byte {pos} cannot be decompressed ({exc}); {lost}"]
    if len(raw) != usize:
        return [f"{path}: the chunk at byte {pos} holds {len(raw)} bytes, not {usize}; {lost}"]
    if stored and zlib.crc32(raw) != stored:
        return [
            f"{path}: the chunk at byte {pos} fails its CRC check (stored {stored:08x}, "
            f"computed {zlib.crc32(raw):08x}); {lost}"
        ]
    return []


def _frame_size(compression: str, data: bytes) -> int:
    """The decompressed size a zstd or lz4 frame header declares (0 when it declares none)."""
    try:
        if compression == "zstd":
            import zstandard

            return max(0, int(zstandard.frame_content_size(data[:18])))
        if compression == "lz4":
            import lz4.frame

            return max(0, int(lz4.frame.get_frame_info(data).get("content_size") or 0))
    except Exception:  # noqa: BLE001 - an unreadable frame header: decompress() says so
        return 0
    return 0


def decompress(compression: str, data: bytes, size: int) -> bytes:
    """A chunk's records, never more than `size` + 1 bytes whatever its frames declare."""
    if compression == "":
        return data
    if compression == "zstd":
        import zstandard

        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)) as reader:
            return reader.read(size + 1)
    if compression == "lz4":
        import lz4.frame

        return lz4.frame.LZ4FrameDecompressor().decompress(data, max_length=size + 1)
    raise ValueError(f"unknown compression {compression!r}")


def _footer(fh: BinaryIO, size: int) -> tuple[int, int, int] | None:
    """(footer offset, summary start, stored summary CRC), or None without a readable footer."""
    at = size - len(MCAP_MAGIC) - _HEAD.size - _FOOTER_BODY
    if at < len(MCAP_MAGIC):
        return None
    fh.seek(at)
    raw = fh.read(_HEAD.size + _FOOTER_BODY)
    opcode, length = _HEAD.unpack_from(raw)
    if opcode != _FOOTER or length != _FOOTER_BODY:
        return None
    start, _offsets, crc = struct.unpack_from("<QQI", raw, _HEAD.size)
    return at, start, crc


def _crc_range(fh: BinaryIO, start: int, stop: int) -> int:
    fh.seek(start)
    crc, left = 0, stop - start
    while left > 0:
        block = fh.read(min(_BLOCK, left))
        if not block:
            break
        crc, left = zlib.crc32(block, crc), left - len(block)
    return crc


def _check_summary(path: Path, fh: BinaryIO, size: int) -> list[str]:
    footer = _footer(fh, size)
    if footer is None:
        return []
    at, start, stored = footer
    if not stored or not 0 < start <= at:
        return []
    crc = _crc_range(fh, start, at + _HEAD.size + 16)
    if crc != stored:
        return [
            f"{path}: the summary section at byte {start} fails its CRC check (stored "
            f"{stored:08x}, computed {crc:08x}); its index is not trusted"
        ]
    return []


# ----------------------------------------------------------------------------- reading db3


def check_db3(path: Path, limits: ReadLimits) -> list[str]:
    """The biggest row against the limit, rows the reader would drop without a word.

    A row whose topic id is not in the topics table and a row whose timestamp is not an
    integer are returned as problems (the reader then reads row by row and lets the replay
    fail the commands they cost). A damaged database is left to the reader.
    """
    problems: list[str] = []
    try:
        con = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    except sqlite3.Error:
        return problems
    try:
        big = con.execute(
            "SELECT id, length(data) FROM messages ORDER BY length(data) DESC LIMIT 1"
        ).fetchone()
        if big is not None and big[1] is not None:
            limits.check(path, f"row {big[0]}", int(big[1]), "a message")
        orphans = con.execute(
            "SELECT count(*), min(id) FROM messages WHERE topic_id NOT IN (SELECT id FROM topics)"
        ).fetchone()
        if orphans[0]:
            problems.append(
                f"{path}: {orphans[0]} row(s) name a topic id that is not in its topics table "
                f"(first: row {orphans[1]}); each is read as a damaged message"
            )
        texts = con.execute(
            "SELECT count(*), min(id) FROM messages WHERE typeof(timestamp) != 'integer'"
        ).fetchone()
        if texts[0]:
            problems.append(
                f"{path}: {texts[0]} row(s) have a timestamp that is not an integer (first: "
                f"row {texts[1]}); each is read as a damaged message at its neighbour's time"
            )
    except sqlite3.Error:
        return problems  # damaged pages: the reader reads row by row and says where
    finally:
        con.close()
    return problems


# ----------------------------------------------------------------------------- writing mcap


def fill_mcap_crcs(path: Path) -> None:
    """Write the chunk, data-section and summary CRCs into an .mcap rosbags wrote with zeros.

    Only the CRC fields change (in place), so every other byte, offset and index stays as
    written; run on the closed file before it is moved to its name.
    """
    with path.open("r+b") as fh:
        size = fh.seek(0, io.SEEK_END)
        pos, data_end = len(MCAP_MAGIC), None
        while pos + _HEAD.size <= size and data_end is None:
            fh.seek(pos)
            opcode, length = _HEAD.unpack(fh.read(_HEAD.size))
            if opcode == _CHUNK:
                body = fh.read(length)
                _, _, usize, _, compression, data = _chunk_parts(body)
                fh.seek(pos + _HEAD.size + 24)
                fh.write(struct.pack("<I", zlib.crc32(decompress(compression, data, usize))))
            elif opcode == _DATA_END:
                data_end = pos
            pos += _HEAD.size + length
        if data_end is None:
            raise BagError(f"{path}: no data end record; not an MCAP file this tool wrote")
        crc = _crc_range(fh, 0, data_end)
        fh.seek(data_end + _HEAD.size)
        fh.write(struct.pack("<I", crc))
        footer = _footer(fh, size)
        if footer is not None and footer[1]:
            at, start, _ = footer
            crc = _crc_range(fh, start, at + _HEAD.size + 16)
            fh.seek(at + _HEAD.size + 16)
            fh.write(struct.pack("<I", crc))
