"""Plural answers on crafted heat: which objects "all the cups" returns by their share of the best
object's heat (the share was chosen on the world's validation scenes; here the rule is tested on
known scores, not its accuracy).
"""

from __future__ import annotations

import numpy as np

from iterprime_ros.answers import PLURAL_SHARE, plural_objects
from iterprime_ros.core.replies import plural_request

H, W = 40, 80


def _scene():
    """Four grey squares in a row on a white image, one proposal each."""
    image = np.full((H, W, 3), 255, np.uint8)
    masks = np.zeros((4, H, W), bool)
    for k in range(4):
        masks[k, 15:25, 5 + 18 * k : 15 + 18 * k] = True
        image[masks[k]] = 120
    return image, masks


def test_a_weakly_heated_object_still_counts_while_a_cold_one_does_not():
    image, masks = _scene()
    scores = np.array([1.0, 0.3, 0.12, 0.05])
    objects = plural_objects(image, masks, scores, 0, plural_request("all the cups"))
    assert [o.proposal_index for o in objects] == [0, 1, 2]  # left to right
    assert 0.05 < PLURAL_SHARE <= 0.12


def test_a_stated_count_keeps_the_hottest_objects():
    image, masks = _scene()
    scores = np.array([0.2, 1.0, 0.3, 0.9])
    objects = plural_objects(image, masks, scores, 1, plural_request("the two cups"))
    assert [o.proposal_index for o in objects] == [1, 3]
