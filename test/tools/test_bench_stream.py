"""The streaming-camera bench (iterprime_ros/tools/bench/node_stream.py): its camera gives one
scene with fresh sensor noise (or two, swapped on a period), CPU time and UDP drops are read from
the kernel, and the table prints every case side by side. The full DDS run is a benchmark, not a
test.
"""

from __future__ import annotations

import os
import socket
import time

import numpy as np

from iterprime_ros.prefetch import scene_difference, thumbnail
from iterprime_ros.tools.bench.node_stream import (
    Camera,
    cpu_seconds,
    drops_between,
    format_table,
    socket_drops,
)


def test_the_camera_streams_one_scene_with_noise_or_swaps_views():
    still = Camera((64, 48), scene_period=0.0)
    a, b = still.next(), still.next()
    assert a.shape == (48, 64, 3) and not np.array_equal(a, b)  # new noise: a new frame
    assert scene_difference(thumbnail(a), thumbnail(b)) < 0.02  # the same scene
    swapping = Camera((64, 48), scene_period=0.05)
    first = swapping.next()
    time.sleep(0.06)
    second = swapping.next()
    assert scene_difference(thumbnail(first), thumbnail(second)) >= 0.02


def test_cpu_seconds_grow_with_work():
    before = cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:
        pass
    assert cpu_seconds(os.getpid()) - before >= 0.1


def test_the_table_lists_each_case():
    rows = [
        dict(
            rate_hz=rate,
            prefetch=mode,
            first_s=3.0,
            p50_s=0.4 if mode == "latest" else 2.5,
            p95_s=0.6,
            node_p50_s=0.3,
            prepared_share=1.0 if mode == "latest" else 0.0,
            age_p50_s=1.5,
            idle_cpu_cores=0.3,
            failed=0,
            to_node_p50_s=0.004,
            to_client_p50_s=0.031,
            node_drops={},
            client_drops={23161: 7, 23162: 5},
        )
        for rate in (2.0, 15.0)
        for mode in ("off", "latest")
    ]
    text = format_table(rows, "test conditions")
    lines = text.splitlines()
    assert lines[0].endswith("test conditions") and len(lines) == 6
    assert "15Hz   latest" in text and "100%" in text and "2.50s" in text
    assert "to node" in lines[1] and "0.004s" in text and "0.031s" in text
    assert " 0/12 " in text  # datagrams dropped at the node / at the bench


def test_socket_drops_count_the_datagrams_a_full_socket_refused():
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the kernel's minimum
        receiver.bind(("127.0.0.1", 0))
        port = receiver.getsockname()[1]
        before = socket_drops(os.getpid())
        assert before.get(port) == 0  # this process's socket, nothing dropped yet
        for _ in range(200):  # never read: the buffer fills and the rest is dropped
            sender.sendto(b"x" * 1000, ("127.0.0.1", port))
        dropped = drops_between(before, socket_drops(os.getpid()))
        assert dropped.get(port, 0) > 0
        assert set(dropped) <= set(socket_drops(os.getpid()))
    finally:
        receiver.close()
        sender.close()
