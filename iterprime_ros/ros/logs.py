"""Python `logging` of the runtime (pipeline, worker, model loading, text) into the node's ROS
logger.

Why: the node's own lines go through rcutils (console format, /rosout, `--log-level`, launch's
log_level); without this bridge the pipeline's lines would go to stderr in another format, miss
/rosout and ignore the log level. A record's exception is logged as its first line (the full
traceback at debug level), so a user sees one clear line.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

PACKAGE_LOGGER = "iterprime_ros"

# rcutils severities are Python's numbers (DEBUG 10 ... FATAL 50)
_METHOD = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "fatal",
}


class RosLogHandler(logging.Handler):
    """Forwards records of `iterprime_ros.*` to a ROS logger's child named after the module."""

    def __init__(self, ros_logger: Any) -> None:
        super().__init__()
        self.ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            name = record.name.removeprefix(PACKAGE_LOGGER + ".") or "runtime"
            child = self.ros_logger.get_child(name.replace(".", "_"))
            level = max(k for k in _METHOD if k <= max(record.levelno, logging.DEBUG))
            message = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                first = (str(exc).strip().splitlines() or [""])[0]
                message = f"{message}: {type(exc).__name__}: {first}"
                child.debug("".join(traceback.format_exception(*record.exc_info)).rstrip())
            getattr(child, _METHOD[level])(message)
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)


def bridge(ros_logger: Any) -> RosLogHandler:
    """Send the package's Python logging to `ros_logger` (replacing an earlier bridge).

    The Python level follows the ROS logger's (`--log-level`): records below it are not built.
    """
    py = logging.getLogger(PACKAGE_LOGGER)
    for old in [h for h in py.handlers if isinstance(h, RosLogHandler)]:
        py.removeHandler(old)
    handler = RosLogHandler(ros_logger)
    py.addHandler(handler)
    py.propagate = False
    try:
        py.setLevel(int(ros_logger.get_effective_level()))
    except Exception:  # noqa: BLE001 - keep logging's default if rclpy cannot say
        py.setLevel(logging.INFO)
    return handler


def unbridge(handler: RosLogHandler) -> None:
    py = logging.getLogger(PACKAGE_LOGGER)
    py.removeHandler(handler)
    if not any(isinstance(h, RosLogHandler) for h in py.handlers):
        py.propagate = True
