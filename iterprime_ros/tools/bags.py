"""Reading and writing rosbag2 files (.mcap, .db3, bag directories) without a ROS install.

Why a module of its own: offline replay, the live bag player, the sample-bag script and
the tests all need the same three things -- a rosbags typestore that also knows
``iterprime_ros/msg/Segmentation`` (so output bags embed its definition and ``ros2 bag
info``/``play`` can decode them), one reader that turns every failure into a one-line
``BagError``, and one writer that can produce a single ``.mcap``/``.db3`` file as well as
a rosbag2 directory. Nothing here imports rclpy.
"""

from __future__ import annotations

import os
import shutil
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
    "find_interface_file",
    "header",
    "image_message",
    "qos_profile",
    "stamp_ns",
    "string_message",
    "typestore",
]

PACKAGE = "iterprime_ros"
SEGMENTATION_TYPE = "iterprime_ros/msg/Segmentation"
# Single-file suffixes rosbag2 (and rosbags) open without a metadata.yaml.
STORAGE_IDS: dict[str, str] = {".mcap": "mcap", ".db3": "sqlite3"}


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
    path = find_interface_file()
    try:
        store.register(get_types_from_msg(path.read_text(encoding="utf-8"), SEGMENTATION_TYPE))
    except Exception as exc:  # noqa: BLE001 - a parse error in the .msg is a packaging bug
        raise BagError(f"cannot register {SEGMENTATION_TYPE} from {path}: {exc}") from exc
    return store


def appended_segmentation_fields() -> dict[str, Any]:
    """The fields appended to Segmentation after the first release (target frame, prefetch,
    tracking), empty: rosbags message classes have no defaults, and replay fills none of them.
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
    }


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
    connection: Connection = field(repr=False, compare=False)


class BagReader:
    """Context manager over a rosbag2 directory, a single .mcap/.db3 file or ROS 1 .bag file(s).

    Every failure to open or read raises BagError with the path in the message.
    Message types come from the definitions embedded in the bag, falling back on
    ``typestore()`` (Kilted + Segmentation) for bags recorded without them.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._reader: Any = None

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
            raise BagError(f"cannot open bag {self.path}: {_one_line(exc)}") from exc
        self._reader = reader
        return self

    def __exit__(self, *exc: object) -> None:
        reader, self._reader = self._reader, None
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
    def topics(self) -> dict[str, str]:
        """Topic -> message type ("" when one topic holds several types)."""
        return {name: info.msgtype or "" for name, info in self._open.topics.items()}

    @property
    def counts(self) -> dict[str, int]:
        """Topic -> number of messages."""
        return {name: info.msgcount for name, info in self._open.topics.items()}

    @property
    def start_ns(self) -> int:
        return int(self._open.start_time)

    @property
    def end_ns(self) -> int:
        return int(self._open.end_time)

    @property
    def typestore(self) -> Any:
        """The types this bag's messages are decoded with (its embedded definitions)."""
        return self._open.typestore

    @property
    def is_ros1(self) -> bool:
        return not self._open.is2

    def connections_qos(self, topic: str) -> list[Qos]:
        """QoS profiles the recorded publishers offered on a topic ([] when not recorded)."""
        out: list[Qos] = []
        for conn in self._open.connections:
            if conn.topic == topic:
                out.extend(getattr(conn.ext, "offered_qos_profiles", None) or [])
        return out

    def messages(self, topics: Iterable[str] | None = None) -> Iterator[BagMessage]:
        """Messages in time order, optionally only those on some topics.

        A damaged file surfaces as BagError part-way through the iteration.
        """
        reader = self._open
        wanted = set(topics) if topics is not None else None
        conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
        if wanted is not None and not conns:
            return
        try:
            for conn, stamp, raw in reader.messages(connections=conns):
                yield BagMessage(conn.topic, conn.msgtype, int(stamp), bytes(raw), conn)
        except BagError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise BagError(f"bag {self.path} is damaged: {_one_line(exc)}") from exc

    def deserialize(self, message: BagMessage) -> Any:
        """Raw bytes -> rosbags message object; a corrupt message raises BagError naming it."""
        reader = self._open
        try:
            return reader.deserialize(message.raw, message.msgtype)
        except Exception as exc:  # noqa: BLE001 - truncated CDR gives struct/index errors, not SerdeError
            at = (message.timestamp_ns - reader.start_time) / 1e9
            raise BagError(
                f"corrupt {message.msgtype} message on {message.topic} at +{at:.3f} s "
                f"(bag time {message.timestamp_ns}): {_one_line(exc)}"
            ) from exc

    def cdr(self, message: BagMessage) -> bytes:
        """The message as ROS 2 CDR bytes (ROS 1 bags are converted), e.g. for rclpy."""
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


class BagWriter:
    """Context manager that writes a rosbag2 bag: ``x.mcap``/``x.db3`` -> one self-contained
    file; any other path -> a rosbag2 directory (metadata.yaml + one storage file).

    The bag is built in a temporary folder beside the target and moved into place on a
    clean close, so a crash never leaves a half-written bag under the requested name.
    On an exception inside the ``with`` block the messages written so far are still
    closed into a valid bag (the caller decides whether partial output is useful).
    Types must be in ``typestore()`` or given to ``add_topic`` via ``store``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        storage: str | None = None,
        overwrite: bool = False,
        compress: bool = False,
    ) -> None:
        self.path = Path(path)
        self.storage, self.single_file = _storage_for(self.path, storage)
        self.overwrite = overwrite
        self.compress = compress
        self._writer: Any = None
        self._tmp: Path | None = None
        self._connections: dict[str, Connection] = {}
        self.counts: dict[str, int] = {}

    def __enter__(self) -> "BagWriter":
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.rosbag2.enums import CompressionFormat, CompressionMode

        if self.path.exists() and not self.overwrite:
            raise BagError(
                f"output {self.path} exists already (choose another name or allow overwriting)"
            )
        parent = self.path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=parent))
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
        try:
            writer.close()
            built = tmp / self.path.stem
            source = (
                next(built.glob(f"*{'.mcap' if self.storage == 'mcap' else '.db3'}"))
                if self.single_file
                else built
            )
            if self.path.exists():  # overwrite was allowed (checked on enter)
                if self.path.is_dir():
                    shutil.rmtree(self.path)
                else:
                    self.path.unlink()
            os.replace(source, self.path)
        except Exception as err:  # noqa: BLE001
            if exc_type is None:
                raise BagError(f"cannot finish bag {self.path}: {_one_line(err)}") from err
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


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


def stamp_ns(hdr: Any) -> int:
    """Nanoseconds of a rosbags std_msgs/Header stamp."""
    return int(hdr.stamp.sec) * 1_000_000_000 + int(hdr.stamp.nanosec)


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
