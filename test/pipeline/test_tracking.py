"""The mask tracker on crafted sequences whose true masks are known exactly.

A textured background (smoothed noise, so the flow has something to lock on) and a red square
that moves by a known number of pixels per frame; the true mask of every frame is drawn, so
each check compares against geometry, not against a recorded output.
"""

import cv2
import numpy as np
import pytest

from iterprime_ros.tracking import (
    MaskTracker,
    TrackerSettings,
    TrackStatus,
    appearance_histogram,
    appearance_similarity,
    mask_iou,
    warp_mask,
)

H, W = 120, 160
RED = (220, 40, 40)
BLUE = (40, 70, 220)


def background(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.normal(128, 40, (H, W, 3)).astype(np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), 1.5)
    return np.clip(noise * 0.6 + 50, 0, 255).astype(np.uint8)


def square_mask(x: int, y: int, size: int = 24) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[max(y, 0) : max(y + size, 0), max(x, 0) : max(x + size, 0)] = True
    return m


def frame(bg: np.ndarray, *objects: tuple[np.ndarray, tuple[int, int, int]]) -> np.ndarray:
    img = bg.copy()
    for mask, colour in objects:
        img[mask] = colour
    return img


def test_settings_are_checked():
    with pytest.raises(ValueError, match="flow"):
        TrackerSettings(flow="lucas")
    with pytest.raises(ValueError, match="min_appearance"):
        TrackerSettings(min_appearance=1.5)


def test_warp_mask_moves_by_a_known_flow():
    m = square_mask(40, 30)
    flow = np.zeros((H, W, 2), np.float32)
    flow[..., 0] = -5.0  # every pixel came from 5 px to its left: the content moved right by 5
    assert mask_iou(warp_mask(m, flow), square_mask(45, 30)) == 1.0


def test_appearance_tells_colours_apart():
    img = frame(background(), (square_mask(20, 20), RED), (square_mask(100, 60), BLUE))
    red = appearance_histogram(img, square_mask(20, 20))
    assert appearance_similarity(red, appearance_histogram(img, square_mask(20, 20))) > 0.99
    assert appearance_similarity(red, appearance_histogram(img, square_mask(100, 60))) < 0.2


@pytest.mark.parametrize("flow", ["dis", "farneback"])
def test_square_moving_by_known_flow_is_followed(flow):
    bg = background()
    tracker = MaskTracker(TrackerSettings(flow=flow))
    first = tracker.start(frame(bg, (square_mask(30, 40), RED)), square_mask(30, 40), 0.0)
    assert first.status == TrackStatus.TRACKING and first.track_id == 1
    ious = []
    for i in range(1, 16):
        truth = square_mask(30 + 3 * i, 40 + i)
        r = tracker.update(frame(bg, (truth, RED)), i / 30)
        assert r.status == TrackStatus.TRACKING, r.reason
        assert r.source == "flow"
        ious.append(mask_iou(r.mask, truth))
        u, v = r.centroid
        assert abs(u - (30 + 3 * i + 11.5)) < 3 and abs(v - (40 + i + 11.5)) < 3
    assert min(ious) > 0.7, ious
    assert np.mean(ious) > 0.85, ious


def test_square_leaving_the_image_is_lost_then_ended_with_a_clear_reason():
    bg = background()
    s = TrackerSettings(max_lost_s=0.2)
    tracker = MaskTracker(s)
    tracker.start(frame(bg, (square_mask(100, 50), RED)), square_mask(100, 50), 0.0)
    statuses = []
    for i in range(1, 30):
        truth = square_mask(100 + 4 * i, 50)
        r = tracker.update(frame(bg, (truth, RED)), i / 30)
        statuses.append(r.status)
        if r.status == TrackStatus.LOST:
            assert r.reason == "left the image"
            assert r.mask is None and r.box[2] > W  # the predicted box is past the right edge
        if r.status == TrackStatus.ENDED:
            assert r.reason.startswith("lost for more than 0.2 s: left the image")
            break
    assert statuses[0] == TrackStatus.TRACKING
    assert TrackStatus.LOST in statuses and statuses[-1] == TrackStatus.ENDED
    assert not tracker.active and tracker.update(bg, 2.0) is None


def test_occluded_square_is_lost_and_found_again_by_proposals():
    bg = background()
    tracker = MaskTracker(TrackerSettings(max_lost_s=5.0))
    target = square_mask(60, 50)
    tracker.start(frame(bg, (target, RED)), target, 0.0)
    # a blue bar slides over the (still) red square from the left, covers it, moves on
    found_lost = False
    for i in range(1, 25):
        bar = np.zeros((H, W), bool)
        x = -40 + 6 * i
        bar[30:100, max(x, 0) : max(x + 40, 0)] = True
        visible = target & ~bar
        img = frame(bg, (target, RED), (bar, BLUE))
        proposals = np.stack([m for m in (visible, bar) if m.any()])
        # proposals only every 4th frame, like a model that runs slower than the camera
        r = tracker.update(img, i / 30, proposals if i % 4 == 0 else None)
        if not visible.any():
            assert r.status == TrackStatus.LOST, "a hidden object must not be reported"
            found_lost = True
        if r.status == TrackStatus.TRACKING:
            # the occluder's trailing edge can drag some pixels along (disocclusion), never most
            on_bar = np.count_nonzero(r.mask & bar) / np.count_nonzero(r.mask)
            assert on_bar < 0.5, f"frame {i}: the tracker jumped onto the occluder"
    assert found_lost
    assert r.status == TrackStatus.TRACKING and r.source in ("proposal", "flow")
    assert mask_iou(r.mask, target) > 0.9


def test_reassociation_prefers_the_proposal_that_overlaps_and_looks_alike():
    bg = background()
    target = square_mask(40, 40)
    img = frame(bg, (target, RED), (square_mask(70, 40), BLUE), (square_mask(110, 80), RED))
    tracker = MaskTracker(TrackerSettings(flow="none"))
    tracker.start(img, target, 0.0)
    half = target.copy()
    half[:, 52:] = False
    merged = target | square_mask(70, 40)
    proposals = np.stack([square_mask(110, 80), half, merged, target, square_mask(70, 40)])
    r = tracker.update(img, 0.1, proposals)
    assert r.source == "proposal" and mask_iou(r.mask, target) == 1.0


def test_new_start_replaces_the_track_and_cancel_ends_it():
    bg = background()
    tracker = MaskTracker()
    img = frame(bg, (square_mask(30, 30), RED))
    tracker.start(img, square_mask(30, 30), 0.0)
    ended = tracker.end("new command 2", 0.5)
    assert ended.status == TrackStatus.ENDED and ended.track_id == 1
    second = tracker.start(img, square_mask(30, 30), 0.5)
    assert second.track_id == 2 and tracker.active
    assert tracker.end("cancelled").reason == "cancelled"
    assert tracker.end("again") is None


def test_timeout_ends_the_track():
    bg = background()
    tracker = MaskTracker(TrackerSettings(track_timeout_s=1.0))
    img = frame(bg, (square_mask(30, 30), RED))
    tracker.start(img, square_mask(30, 30), 10.0)
    assert tracker.update(img, 10.5).status == TrackStatus.TRACKING
    r = tracker.update(img, 11.5)
    assert r.status == TrackStatus.ENDED and r.reason.startswith("timeout")


def test_appearance_change_loses_the_track():
    bg = background()
    tracker = MaskTracker()
    m = square_mask(30, 30)
    tracker.start(frame(bg, (m, RED)), m, 0.0)
    r = tracker.update(frame(bg, (m, BLUE)), 0.1)  # same place, another object's colour
    assert r.status == TrackStatus.LOST and "does not look like the object" in r.reason


def test_start_rejects_an_empty_mask():
    with pytest.raises(ValueError, match="non-empty"):
        MaskTracker().start(background(), np.zeros((H, W), bool), 0.0)


def test_reassociation_skips_a_better_placed_proposal_that_looks_different():
    bg = background()
    target = square_mask(60, 50)
    tracker = MaskTracker(TrackerSettings(flow="none"))
    tracker.start(frame(bg, (target, RED)), target, 0.0)
    lost = tracker.update(bg, 0.1)  # the object is gone
    assert lost.status == TrackStatus.LOST
    # back: a blue square exactly where it was, the red one (the object) 8 px to the right
    blue, red = square_mask(60, 50), square_mask(68, 50)
    img = frame(bg, (blue, BLUE), (red & ~blue, RED))
    r = tracker.update(img, 0.2, np.stack([blue, red & ~blue]))
    assert r.status == TrackStatus.TRACKING and r.source == "proposal"
    assert mask_iou(r.mask, red & ~blue) == 1.0
