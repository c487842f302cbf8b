"""Big camera frames reach the node (iterprime_ros/ros/dds_profile.py): with a camera driver's
sensor-data (best-effort) publisher in another process on the same host, a 1920x1080 rgb8 stream
at 15 Hz arrives through the node's DDS profile; with the middleware's defaults it mostly does
not. Real processes and real Fast DDS (tools/bench/qos_delivery.py drives both sides).
"""

from __future__ import annotations

import argparse

import ros_helpers  # noqa: F401  (this session's ROS_DOMAIN_ID)

from iterprime_ros.ros import dds_profile
from iterprime_ros.tools.bench import qos_delivery


def test_the_profile_is_set_only_for_fast_dds_without_a_users_own(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    env: dict[str, str] = {}
    assert "UDP" in dds_profile.apply(env)
    path = env["FASTDDS_DEFAULT_PROFILES_FILE"]
    text = open(path).read()
    assert "<useBuiltinTransports>false</useBuiltinTransports>" in text
    assert f"<receiveBufferSize>{dds_profile.RECEIVE_BUFFER}</receiveBufferSize>" in text
    own = {"FASTRTPS_DEFAULT_PROFILES_FILE": "/etc/mine.xml"}
    assert "the user's own" in dds_profile.apply(own) and len(own) == 1
    other = {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}
    assert "not Fast DDS" in dds_profile.apply(other) and len(other) == 1
    off = {dds_profile.SWITCH: "off"}
    assert "defaults" in dds_profile.apply(off) and len(off) == 1


def _delivered(profile: str) -> float:
    args = argparse.Namespace(
        seconds=4.0, rate=15.0, publisher="sensor_data", node_profile=profile, sub_env=[]
    )
    return qos_delivery.run_case((1920, 1080), "best_effort", args)["delivered"]


def test_a_1080p_sensor_data_stream_arrives(monkeypatch):
    # ROS's default discovery range (subnet): with LOCALHOST rmw_fastrtps sets the participant's
    # transports itself and the profile does not apply (docs/performance.md "Big frames")
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "SUBNET")
    with_profile = _delivered("on")
    defaults = _delivered("off")
    # measured 89 % against 1 % on a loaded 2-core machine (docs/performance.md "Big frames")
    assert with_profile >= 0.3, (with_profile, defaults)
    assert with_profile > defaults, (with_profile, defaults)


def test_torch_caches_go_to_the_users_cache_unless_one_is_chosen():
    """The node keeps TMPDIR clean: torch's compiler cache folder (made when transformers imports
    torch._dynamo) goes to the user's cache folder; a folder the user chose is kept.
    """
    from iterprime_ros.ros.main import keep_torch_caches_out_of_tmp

    env = {"XDG_CACHE_HOME": "/home/robot/.cache"}
    assert keep_torch_caches_out_of_tmp(env) == "/home/robot/.cache/torch/inductor"
    own = {"TORCHINDUCTOR_CACHE_DIR": "/data/inductor", "XDG_CACHE_HOME": "/x"}
    assert keep_torch_caches_out_of_tmp(own) == "/data/inductor"
