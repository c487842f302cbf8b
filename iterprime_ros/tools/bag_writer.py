"""Writing rosbag2 bags safely: one writer per output, nothing half-written under the asked-for
name, finished messages kept when a run is interrupted, and MCAP CRCs filled in.

Why a module of its own: the replay, the player's recorder, the demo and the sample-bag script
write bags, and each must keep the same promises (see docs/replay.md, "What is guaranteed").
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any, Iterable

from rosbags.interfaces import Connection, Qos

from .bag_check import fill_mcap_crcs
from .bag_lock import OutputLock, rename_noreplace
from .bag_types import STORAGE_IDS, BagError, BagWriteError, _one_line, qos_profile, typestore

# First bytes of the storage files this module writes: what --force may replace.
MAGIC: dict[str, bytes] = {".mcap": b"\x89MCAP0\r\n", ".db3": b"SQLite format 3\x00"}
# Files a rosbag2 folder written here can hold (sqlite keeps its journal beside the .db3).
_BAG_FOLDER_SUFFIXES = (".mcap", ".db3", ".db3-shm", ".db3-wal", ".db3-journal")
TEMP_SUFFIX = ".iterprime-tmp"  # a bag being written: .{name}.XXXX.iterprime-tmp beside it
_OWNER = "owner.pid"  # inside a temp folder: the writing process, to tell stale ones apart

# --------------------------------------------------------------------------------------
# Writing


def _storage_for(path: Path, storage: str | None) -> tuple[str, bool]:
    """(storage id, single_file) for an output path: .mcap/.db3 name a single file."""
    if path.suffix in STORAGE_IDS:
        wanted = STORAGE_IDS[path.suffix]
        if storage not in (None, wanted):
            raise BagError(
                f"output {path} has suffix {path.suffix} but storage {storage!r} was asked for"
            )
        return wanted, True
    storage = storage or "mcap"
    if storage not in STORAGE_IDS.values():
        raise BagError(f"unknown storage {storage!r}; choose mcap or sqlite3")
    return storage, False


def partial_name(path: str | os.PathLike[str]) -> Path:
    """Where an interrupted write keeps its finished messages: out.mcap -> out.partial.mcap,
    folder out -> out.partial (a bag of its own, readable by every tool).
    """
    p = Path(path)
    if p.suffix in STORAGE_IDS:
        return p.with_name(f"{p.stem}.partial{p.suffix}")
    return p.with_name(f"{p.name}.partial")


def _looks_like_written_bag(path: Path) -> str:
    """Why `path` is not a bag this module could have written ("" when it is one)."""
    if path.is_symlink():
        return "it is a symbolic link"
    if path.is_file():
        magic = MAGIC.get(path.suffix)
        if magic is None:
            return "it is not a .mcap or .db3 file"
        with path.open("rb") as fh:
            if fh.read(len(magic)) != magic:
                return f"it is not a {path.suffix} bag (its first bytes say otherwise)"
        return ""
    if path.is_dir():
        if not (path / "metadata.yaml").is_file():
            return "it is a folder without a rosbag2 metadata.yaml"
        other = sorted(
            e.name
            for e in path.iterdir()
            if not (
                e.is_file()
                and not e.is_symlink()
                and (e.name == "metadata.yaml" or e.name.endswith(_BAG_FOLDER_SUFFIXES))
            )
        )
        if other:
            shown = ", ".join(other[:5]) + (" ..." if len(other) > 5 else "")
            return f"it is a folder holding more than a bag ({shown})"
        return ""
    return "it is neither a file nor a folder"


def check_replaceable(
    path: str | os.PathLike[str], protect: Iterable[str | os.PathLike[str]] = ()
) -> None:
    """BagError unless `path` may be replaced: never one of `protect` (the inputs) nor a folder
    holding one, and only a bag this module could have written (so --force never deletes data).
    """
    target = Path(path)
    resolved = target.resolve()
    for other in protect:
        theirs = Path(other).resolve()
        if theirs == resolved or resolved in theirs.parents:
            raise BagError(
                f"refusing to replace {target}: it is or holds the input {other}; "
                "choose another output name"
            )
    if not target.exists() and not target.is_symlink():
        return
    why = _looks_like_written_bag(target)
    if why:
        raise BagError(
            f"refusing to replace {target}: {why}; only a bag this tool writes is replaced "
            "(remove it yourself or choose another output name)"
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def clean_stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Remove temp folders a killed writer of `path` left behind (SIGKILL cannot clean up).

    Called only while this process holds `path`'s OutputLock, and every writer of `path` holds
    that lock for its whole life, so no live writer of `path` can own one of the folders: the
    sweep cannot race a run that has just created its folder. Only folders named exactly like
    this output's temps (.{name}.XXXX.iterprime-tmp, XXXX without dots: never another output's)
    and not owned by a live process of another tool version are removed; returns them.
    """
    target = Path(path)
    removed: list[Path] = []
    if not target.parent.is_dir():
        return removed
    ours = re.compile(rf"\.{re.escape(target.name)}\.[A-Za-z0-9_]+{re.escape(TEMP_SUFFIX)}")
    for folder in target.parent.iterdir():
        if not ours.fullmatch(folder.name) or not folder.is_dir() or folder.is_symlink():
            continue
        try:
            pid = int((folder / _OWNER).read_text().strip())
        except (OSError, ValueError):
            pid = 0
        if pid and _pid_alive(pid):
            continue  # this process's own writer, or one of a version that did not lock
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


class _SignalsHeld:
    """Hold SIGINT/SIGTERM while a bag is being closed and moved into place (no half-done
    rename); a signal that arrives meanwhile is delivered right after.
    """

    SIGNALS = {signal.SIGINT, signal.SIGTERM}

    def __enter__(self) -> None:
        self._old = signal.pthread_sigmask(signal.SIG_BLOCK, self.SIGNALS)

    def __exit__(self, *exc: object) -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, self._old)


class BagWriter:
    """Context manager that writes a rosbag2 bag: ``x.mcap``/``x.db3`` -> one self-contained
    file; any other path -> a rosbag2 directory (metadata.yaml + one storage file).

    The bag is built in a temporary folder beside the target (.{name}.XXXX.iterprime-tmp) and
    moved into place on a clean close, so nothing half-written ever has the requested name.
    On an exception inside the ``with`` block (Ctrl-C, SIGTERM turned into one, an error) the
    messages written so far are closed into a valid bag under ``partial_name(path)`` (nothing is
    kept when nothing was written). A SIGKILL leaves only the temp folder, which the next writer
    of the same name removes (``clean_stale_temps``; ``cleaned`` lists them).
    ``overwrite`` replaces only a bag this module could have written and never one of
    ``protect`` (``check_replaceable``). Types must be in ``typestore()`` or given to
    ``add_topic`` via ``store``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        storage: str | None = None,
        overwrite: bool = False,
        compress: bool = False,
        protect: Iterable[str | os.PathLike[str]] = (),
    ) -> None:
        self.path = Path(path)
        self.storage, self.single_file = _storage_for(self.path, storage)
        self.overwrite = overwrite
        self.compress = compress
        self.protect = tuple(protect)
        self.partial_path = partial_name(self.path)
        self.kept: Path | None = None  # where the bag ended up (final or partial name)
        self.cleaned: list[Path] = []
        self._writer: Any = None
        self._tmp: Path | None = None
        self._connections: dict[str, Connection] = {}
        self.counts: dict[str, int] = {}
        self._lock = OutputLock(self.path)

    def __enter__(self) -> "BagWriter":
        self._lock.acquire()  # before any check: nobody else may be at work on this name
        try:
            self._open()
        except BaseException:
            self._lock.release()
            raise
        return self

    def _open(self) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.rosbag2.enums import CompressionFormat, CompressionMode

        if self.path.exists() or self.path.is_symlink():
            if not self.overwrite:
                raise BagError(
                    f"output {self.path} exists already (choose another name or allow overwriting)"
                )
        check_replaceable(self.path, self.protect)
        parent = self.path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self.cleaned = clean_stale_temps(self.path)
            self._tmp = Path(
                tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=TEMP_SUFFIX, dir=parent)
            )
            (self._tmp / _OWNER).write_text(f"{os.getpid()}\n")
        except OSError as exc:
            raise BagError(f"cannot write to {parent}: {exc.strerror or exc}") from exc
        plugin = StoragePlugin.MCAP if self.storage == "mcap" else StoragePlugin.SQLITE3
        writer = Writer(
            self._tmp / self.path.stem, version=Writer.VERSION_LATEST, storage_plugin=plugin
        )
        if (
            self.compress and self.storage == "mcap"
        ):  # zstd chunks: rosbag2_storage_mcap reads them natively
            writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        try:
            writer.open()
        except Exception as exc:  # noqa: BLE001
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise BagError(f"cannot create bag {self.path}: {_one_line(exc)}") from exc
        self._writer = writer

    def add_topic(
        self, topic: str, msgtype: str, *, qos: str | Qos | None = None, store: Any = None
    ) -> None:
        """Declare a topic before writing to it; the type's definition is embedded in the bag."""
        if topic in self._connections:
            return
        offered = [] if qos is None else [qos_profile(qos) if isinstance(qos, str) else qos]
        try:
            conn = self._writer.add_connection(
                topic, msgtype, typestore=store or typestore(), offered_qos_profiles=offered
            )
        except Exception as exc:  # noqa: BLE001 - unknown type, duplicate topic
            raise BagError(
                f"cannot add topic {topic} ({msgtype}) to {self.path}: {_one_line(exc)}"
            ) from exc
        self._connections[topic] = conn
        self.counts[topic] = 0

    def write(self, topic: str, message: Any, timestamp_ns: int, *, store: Any = None) -> None:
        """Serialize a rosbags message object to CDR and store it."""
        conn = self._connection(topic)
        try:
            raw = (store or typestore()).serialize_cdr(message, conn.msgtype)
        except Exception as exc:  # noqa: BLE001
            raise BagError(
                f"cannot serialize a {conn.msgtype} for {topic}: {_one_line(exc)}"
            ) from exc
        self.write_raw(topic, bytes(raw), timestamp_ns)

    def write_raw(self, topic: str, raw: bytes, timestamp_ns: int) -> None:
        """Store already-serialized CDR bytes as they are (also used to make broken test bags).

        A write the file system refuses (a full disk) is a BagError naming the output; the
        messages written before it are kept under the partial name when the ``with`` ends.
        """
        conn = self._connection(topic)
        try:
            self._writer.write(conn, int(timestamp_ns), raw)
        except OSError as exc:
            raise BagWriteError(
                f"cannot write {self.path} (in {self._tmp}): {exc.strerror or exc}; free space "
                f"and run again (what was written is kept in {self.partial_path})"
            ) from exc
        self.counts[topic] += 1

    def commit(self) -> None:
        """Make what was written so far survive a later failure of this run (a full disk):
        SQLite rows are committed (rosbags commits only at close); an MCAP chunk reaches the
        file when it is full, so at most the last chunk's messages are answered again.
        """
        conn = getattr(getattr(self._writer, "storage", None), "conn", None)
        if conn is None:
            return
        try:
            conn.commit()
        except Exception as exc:  # noqa: BLE001 - sqlite3.OperationalError on a full disk
            raise BagWriteError(
                f"cannot write {self.path} (in {self._tmp}): {_one_line(exc)}; free space and "
                f"run again (what was written is kept in {self.partial_path})"
            ) from exc

    def _connection(self, topic: str) -> Connection:
        try:
            return self._connections[topic]
        except KeyError:
            raise BagError(f"topic {topic} was not added to {self.path} before writing") from None

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        writer, self._writer = self._writer, None
        tmp, self._tmp = self._tmp, None
        if writer is None or tmp is None:
            self._lock.release()
            return
        try:
            with _SignalsHeld():
                self._finish(writer, tmp, clean=exc_type is None)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            self._lock.release()

    def _finish(self, writer: Any, tmp: Path, clean: bool) -> None:
        """Close the bag and move it to its name (clean) or to the partial name.

        The partial name also takes a bag that could not be finished (a full disk: its file
        is cut where the disk filled, which the reader reads up to the cut) and a finished bag
        whose name was taken by someone else during the run (never replaced without
        ``overwrite``); BagError then says so and where the messages are.
        """
        try:
            writer.close()
            why = ""
        except Exception as err:  # noqa: BLE001 - a full disk, a vanished folder
            why = f"cannot finish bag {self.path}: {_one_line(err)}"
        source = self._built(tmp)
        if source is None or (not clean and not sum(self.counts.values())):
            if clean and why:
                raise BagWriteError(why)
            return  # interrupted before anything was written: nothing to keep
        if not why and self.storage == "mcap":
            for f in [source] if source.is_file() else sorted(source.glob("*.mcap")):
                fill_mcap_crcs(f)
        if clean and not why:
            try:
                if self.overwrite:
                    check_replaceable(self.path, self.protect)
                _move_into_place(source, self.path, tmp, self.overwrite)
                self.kept = self.path
                return
            except BagError as err:
                why = str(err)
            except FileExistsError:
                why = (
                    f"{self.path} appeared while this run was writing it and is not replaced "
                    "(--force replaces it)"
                )
        _move_into_place(source, self.partial_path, tmp, True)
        self.kept = self.partial_path
        if clean:
            raise BagWriteError(f"{why}; the messages written are kept in {self.partial_path}")

    def _built(self, tmp: Path) -> Path | None:
        """The bag rosbags built in the temp folder: its storage file, or the bag folder."""
        built = tmp / self.path.stem
        if not self.single_file:
            return built if built.is_dir() else None
        suffix = ".mcap" if self.storage == "mcap" else ".db3"
        return next(iter(sorted(built.glob(f"*{suffix}"))), None)


def _move_into_place(source: Path, target: Path, tmp: Path, replace: bool) -> None:
    """Rename `source` to `target`, never replacing a file there unless `replace`; a replaced
    target goes first into the temp folder, so the old bag is never half-deleted under its name.
    """
    if replace and (target.exists() or target.is_symlink()):
        os.replace(target, tmp / "replaced")
    rename_noreplace(source, target)
