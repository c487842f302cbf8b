"""The node's Fast DDS participant: UDP with a large receive buffer, so big camera frames arrive.

Why: a raw camera frame is a large sample (640x480 rgb8 0.9 MB, 1920x1080 6.2 MB) that DDS cuts
into fragments. On one host Fast DDS's default shared-memory transport hands them over through
the sender's small segment, and a best-effort reader (what a camera driver's sensor-data
publisher requires) loses any frame one of whose fragments was overwritten before it was read;
over UDP the kernel's default 208 KB socket buffer overflows the same way. Measured here
(docs/performance.md "Big frames"): with the defaults a 15 Hz stream arrived at a few percent,
1920x1080 not at all; with this profile, 640x480 100 % and 1920x1080 89 %, on a loaded 2-core
machine. The node cannot change the camera driver, only its own participant: UDP only
(loopback on one host) and a receive buffer up to the kernel's limit (net.core.rmem_max).

The same profile gives the node's writers a 0.1 s periodic heartbeat instead of Fast DDS's 3 s:
an answer on ~/result is about 0.9 MB (its masks), more than a plain front end's default socket
buffer holds, so part of it is dropped there and repaired on the reader's request, which a
heartbeat prompts; should the heartbeat that follows the data be dropped too, the next one comes
0.1 s later, not 3 s. The XML says why for each setting.

Applied by the node's entry point before rclpy starts, only when the middleware is Fast DDS and
no profile file is set already (FASTDDS_DEFAULT_PROFILES_FILE or FASTRTPS_DEFAULT_PROFILES_FILE:
the user's own wins). ``ITERPRIME_DDS_PROFILE=off`` keeps the middleware's defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import MutableMapping

SWITCH = "ITERPRIME_DDS_PROFILE"
PROFILE_VARS = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
RECEIVE_BUFFER = 4 * 1024 * 1024  # beyond net.core.rmem_max the kernel clamps it anyway
HEARTBEAT_PERIOD_S = 0.1  # the node's writers (results, questions, masks); Fast DDS's is 3 s
# The profile itself: UDPv4 only, RECEIVE_BUFFER for the socket buffers, the participant's default;
# HEARTBEAT_PERIOD_S for every writer of the node (the default data_writer profile).
PROFILE_FILE = Path(__file__).with_name("fastdds_camera_frames.xml")


def profile_path() -> Path:
    """The profile shipped beside this module (package data: the node writes no files)."""
    return PROFILE_FILE


def apply(env: MutableMapping[str, str] | None = None) -> str:
    """Set the profile for this process (before rclpy.init); what was done, in words."""
    env = os.environ if env is None else env
    if env.get(SWITCH, "auto").strip().lower() in ("0", "off", "false", "no"):
        return f"DDS profile: middleware defaults ({SWITCH}=off)"
    rmw = env.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    if not rmw.startswith("rmw_fastrtps"):
        return f"DDS profile: not Fast DDS ({rmw}), defaults kept"
    for name in PROFILE_VARS:
        if env.get(name):
            return f"DDS profile: {name}={env[name]} (the user's own)"
    path = profile_path()
    if not path.is_file():
        return f"DDS profile: defaults kept, {path} is missing (a broken install)"
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(path)
    return (
        f"DDS profile: UDP, {RECEIVE_BUFFER >> 20} MB receive buffer, "
        f"{HEARTBEAT_PERIOD_S:g} s writer heartbeat ({path})"
    )
