"""Whether two camera frames show the same scene: the one rule for "the camera moved".

Why here, once: the prefetcher must know whether a prepared frame still shows what the camera
sees, and the conversation must know whether the candidates of a question still stand where
they were found. Both ask the same question of two frames, so they share the answer: the mean
absolute difference of small grey thumbnails, which sensor noise barely moves (block means
average it out) while a moved camera or a moved object changes it clearly.
"""

from __future__ import annotations

import cv2
import numpy as np

THUMB_SIZE = (32, 24)  # width, height of the scene-change thumbnail
# A thumbnail difference at or above this is another scene (0..1, grey levels / 255): sensor
# noise and lighting flicker stay well under it, a camera turned or an object moved go over it.
SCENE_CHANGE = 0.02


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    """A 32x24 grey thumbnail in 0..1 (block means: sensor noise averages out, a moved object
    does not). A few tenths of a millisecond for a VGA frame.
    """
    grey = rgb.mean(axis=2, dtype=np.float32) if rgb.ndim == 3 else rgb.astype(np.float32)
    return cv2.resize(grey, THUMB_SIZE, interpolation=cv2.INTER_AREA) / 255.0


def scene_difference(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    """Mean absolute difference of two thumbnails (0 same .. 1); None when either is unknown."""
    if a is None or b is None or a.shape != b.shape:
        return None
    return float(np.abs(a - b).mean())


def same_scene(a: np.ndarray | None, b: np.ndarray | None, change: float = SCENE_CHANGE) -> bool:
    """Whether thumbnails `a` and `b` show one scene. A threshold of 0 (no scene test) or an
    unknown thumbnail says yes: the caller's other rules (age, image size) decide alone.
    """
    difference = scene_difference(a, b)
    return change <= 0 or difference is None or difference < change
