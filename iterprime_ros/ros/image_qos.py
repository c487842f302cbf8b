"""The QoS of the node's camera subscriptions (image, depth, camera_info).

Why a module of its own: the node and the delivery benchmark (tools/bench/qos_delivery.py) must
subscribe the same way, or the figures in docs/performance.md would not be the node's.
"""

from __future__ import annotations

from typing import Any


def image_qos_profile(image_qos: str) -> Any:
    """best_effort: matches a camera driver's sensor-data publisher (and a reliable one);
    reliable: only a reliable publisher (e.g. a bag player or a depth camera set so).
    """
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

    if image_qos == "reliable":
        return QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    if image_qos != "best_effort":
        raise ValueError(f"image_qos must be best_effort or reliable, not {image_qos!r}")
    return qos_profile_sensor_data
