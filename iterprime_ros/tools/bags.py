"""Reading and writing rosbag2 files (.mcap, .db3, bag directories) without a ROS install.

Why a module of its own: offline replay, the live bag player, the sample-bag script and
the tests all need the same three things -- a rosbags typestore that also knows
``iterprime_ros/msg/Segmentation`` (so output bags embed its definition and ``ros2 bag
info``/``play`` can decode them), one reader that turns every failure into a one-line
``BagError``, and one writer that can produce a single ``.mcap``/``.db3`` file as well as
a rosbag2 directory. Nothing here imports rclpy.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator

from rosbags.interfaces import (
    Connection,
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)

__all__ = [
    "BagError",
    "BagMessage",
    "BagReader",
    "BagWriter",
    "SEGMENTATION_TYPE",
    "STORAGE_IDS",
    "bag_summary",
    "check_replaceable",
    "clean_stale_temps",
    "partial_name",
    "find_interface_file",
    "header",
    "image_message",
    "qos_profile",
    "stamp_ns",
    "string_message",
    "typestore",
]

from ..ros.names import stamp_ns  # noqa: E402 - one definition, re-exported for the tools

PACKAGE = "iterprime_ros"
SEGMENTATION_TYPE = "iterprime_ros/msg/Segmentation"
CANDIDATE_TYPE = "iterprime_ros/msg/Candidate"
CANDIDATE_FILE = "msg/Candidate.msg"
# Single-file suffixes rosbag2 (and rosbags) open without a metadata.yaml.
STORAGE_IDS: dict[str, str] = {".mcap": "mcap", ".db3": "sqlite3"}
# First bytes of the storage files this module writes: what --force may replace.
MAGIC: dict[str, bytes] = {".mcap": b"\x89MCAP0\r\n", ".db3": b"SQLite format 3\x00"}
# Files a rosbag2 folder written here can hold (sqlite keeps its journal beside the .db3).
_BAG_FOLDER_SUFFIXES = (".mcap", ".db3", ".db3-shm", ".db3-wal", ".db3-journal")
TEMP_SUFFIX = ".iterprime-tmp"  # a bag being written: .{name}.XXXX.iterprime-tmp beside it
_OWNER = "owner.pid"  # inside a temp folder: the writing process, to tell stale ones apart


class BagError(RuntimeError):
    """A bag cannot be opened, read or written; the message is one line meant for a person."""


# --------------------------------------------------------------------------------------
# Type store


def _interface_dirs() -> Iterator[Path]:
    """Where msg/ may be: the source tree first, then every plausible installed share/."""
    here = Path(__file__).resolve().parents[1]  # the iterprime_ros package folder
    yield here.parent  # source checkout or editable install: <repo>/msg
    try:  # a sourced ROS workspace (colcon install, apt install)
        from ament_index_python.packages import get_package_share_directory

        yield Path(get_package_share_directory(PACKAGE))
    except Exception:  # noqa: BLE001 - not installed / not a ROS environment
        pass
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            yield Path(prefix) / "share" / PACKAGE
    yield Path(sys.prefix) / "share" / PACKAGE  # scripts/setup.sh builds msg/ into the venv
    # colcon install: <prefix>/lib/pythonX.Y/site-packages/iterprime_ros ->
    # <prefix>/share/iterprime_ros
    for parent in here.parents[:5]:
        yield parent / "share" / PACKAGE


def find_interface_file(relative: str = "msg/Segmentation.msg") -> Path:
    """Path of one of this package's interface files, in the source tree or an install."""
    tried: list[str] = []
    for folder in _interface_dirs():
        candidate = folder / relative
        if candidate.is_file():
            return candidate
        tried.append(str(candidate))
    raise BagError(
        f"cannot find {PACKAGE}/{relative}; looked in: {', '.join(dict.fromkeys(tried))}"
    )


@lru_cache(maxsize=1)
def typestore() -> Any:
    """ROS 2 Kilted typestore with iterprime_ros/msg/Segmentation registered (built once)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    # Candidate first: Segmentation's definition refers to it.
    for name, msgtype in (
        (CANDIDATE_FILE, CANDIDATE_TYPE),
        ("msg/Segmentation.msg", SEGMENTATION_TYPE),
    ):
        path = find_interface_file(name)
        try:
            store.register(get_types_from_msg(path.read_text(encoding="utf-8"), msgtype))
        except Exception as exc:  # noqa: BLE001 - a parse error in the .msg is a packaging bug
            raise BagError(f"cannot register {msgtype} from {path}: {exc}") from exc
    return store


def appended_segmentation_fields() -> dict[str, Any]:
    """The fields appended to Segmentation after the first release (target frame, prefetch,
    tracking, conversation), empty: rosbags message classes have no defaults, so a message built
    offline starts from these and replay overwrites the ones it decides.
    """
    types = typestore().types
    point = types["geometry_msgs/msg/Point"]
    stamped = types["geometry_msgs/msg/PointStamped"]
    return {
        "depth_stamp": types["builtin_interfaces/msg/Time"](sec=0, nanosec=0),
        "has_target_point": False,
        "centroid_target": stamped(header=header(0, ""), point=point(0.0, 0.0, 0.0)),
        "grasp_point_target": stamped(header=header(0, ""), point=point(0.0, 0.0, 0.0)),
        "extent_3d": types["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0),
        "error_3d": "",
        "prefetched": False,
        "track_id": 0,
        "track_status": 0,
        "track_reason": "",
        "status": 0,
        "confidence": 0.0,
        "sure": False,
        "ambiguous": False,
        "question": "",
        "in_reply_to": 0,
        "candidates": [],
        "objects": [],
    }


def message_fields(cls: type) -> list[str]:
    """The data fields of a rosbags message class (not its constants nor ``__msgtype__``)."""
    return [
        f.name
        for f in dataclasses.fields(cls)
        if not f.name.startswith("__") and not str(f.type).startswith("ClassVar")
    ]


def current_segmentation(message: Any) -> Any:
    """A Segmentation read from any bag, as this version's message (for writing it again).

    A bag keeps the definition it was written with; results written before fields were appended
    lack them, and copying their bytes under today's definition would make a bag no reader can
    decode. Fields the old message has are kept; the appended ones take their empty values.
    """
    cls = typestore().types[SEGMENTATION_TYPE]
    empty = appended_segmentation_fields()
    names = message_fields(cls)
    return cls(**{n: getattr(message, n) if hasattr(message, n) else empty[n] for n in names})


def qos_profile(kind: str) -> Qos:
    """The QoS a publisher of this kind offers, as rosbags records it in bag metadata.

    "sensor": best effort, keep last 5 (rclpy's qos_profile_sensor_data); "reliable":
    reliable, keep last 10, volatile (the node's command/result QoS).
    """
    zero = QosTime(0, 0)
    if kind == "sensor":
        reliability, depth = QosReliability.BEST_EFFORT, 5
    elif kind == "reliable":
        reliability, depth = QosReliability.RELIABLE, 10
    else:
        raise ValueError(f"unknown QoS kind {kind!r} (sensor | reliable)")
    return Qos(
        QosHistory.KEEP_LAST,
        depth,
        reliability,
        QosDurability.VOLATILE,
        zero,
        zero,
        QosLiveliness.AUTOMATIC,
        zero,
        False,
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

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
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
        from .bag_salvage import salvage, storage_files

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
            store.register({SEGMENTATION_TYPE: typestore().fielddefs[SEGMENTATION_TYPE]})
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

    Only folders named like ours (.{name}.*.iterprime-tmp) whose owner process is gone; returns
    what was removed, so the caller can say so.
    """
    target = Path(path)
    removed: list[Path] = []
    if not target.parent.is_dir():
        return removed
    for folder in target.parent.glob(f".{target.name}.*{TEMP_SUFFIX}"):
        if not folder.is_dir() or folder.is_symlink():
            continue
        try:
            pid = int((folder / _OWNER).read_text().strip())
        except (OSError, ValueError):
            pid = 0
        if pid and pid != os.getpid() and _pid_alive(pid):
            continue  # another writer is at work on the same name
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

    def __enter__(self) -> "BagWriter":
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
        return self

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
        """Store already-serialized CDR bytes as they are (also used to make broken test bags)."""
        self._writer.write(self._connection(topic), int(timestamp_ns), raw)
        self.counts[topic] += 1

    def _connection(self, topic: str) -> Connection:
        try:
            return self._connections[topic]
        except KeyError:
            raise BagError(f"topic {topic} was not added to {self.path} before writing") from None

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        writer, self._writer = self._writer, None
        tmp, self._tmp = self._tmp, None
        if writer is None or tmp is None:
            return
        with _SignalsHeld():
            try:
                writer.close()
                if exc_type is None:
                    target = self.path
                elif sum(self.counts.values()):
                    target = self.partial_path
                else:
                    return  # interrupted before anything was written: nothing to keep
                built = tmp / self.path.stem
                source = (
                    next(built.glob(f"*{'.mcap' if self.storage == 'mcap' else '.db3'}"))
                    if self.single_file
                    else built
                )
                _move_into_place(source, target, tmp)
                self.kept = target
            except Exception as err:  # noqa: BLE001
                if exc_type is None:
                    raise BagError(f"cannot finish bag {self.path}: {_one_line(err)}") from err
            finally:
                shutil.rmtree(tmp, ignore_errors=True)


def _move_into_place(source: Path, target: Path, tmp: Path) -> None:
    """Rename `source` to `target`; an existing target (checked replaceable) goes first into the
    temp folder, so the old bag is never half-deleted under the final name.
    """
    if target.exists() or target.is_symlink():
        os.replace(target, tmp / "replaced")
    os.replace(source, target)


# --------------------------------------------------------------------------------------
# Building rosbags message objects (the fields come from ros/conversions.py)


def header(stamp_ns: int, frame_id: str = "") -> Any:
    """std_msgs/Header for a time in nanoseconds."""
    types = typestore().types
    stamp = types["builtin_interfaces/msg/Time"](
        sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000)
    )
    return types["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)


def image_message(fields: dict[str, Any], hdr: Any) -> Any:
    """sensor_msgs/Image from conversions.*_to_fields() output (bytes data -> uint8 array)."""
    import numpy as np

    data = np.frombuffer(bytes(fields["data"]), dtype=np.uint8)
    return typestore().types["sensor_msgs/msg/Image"](
        header=hdr,
        height=int(fields["height"]),
        width=int(fields["width"]),
        encoding=str(fields["encoding"]),
        is_bigendian=int(fields["is_bigendian"]),
        step=int(fields["step"]),
        data=data,
    )


def string_message(text: str) -> Any:
    return typestore().types["std_msgs/msg/String"](data=text)


# --------------------------------------------------------------------------------------


def bag_summary(path: str | os.PathLike[str]) -> str:
    """A short `ros2 bag info`-like text: duration, and per topic its type and count."""
    with BagReader(path) as bag:
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


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
