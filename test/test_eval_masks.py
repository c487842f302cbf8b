"""Ground-truth decoding: COCO polygons (pycocotools' pixel-centre rule), COCO RLE, PhraseCut
polygons.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from iterprime_ros.tools.eval.masks import (
    coco_polygons_to_mask,
    coco_segmentation_to_mask,
    phrasecut_polygons_to_mask,
    rle_counts_from_string,
    rle_to_mask,
)


def test_square_with_integer_corners_covers_exactly_its_pixel_block():
    m = coco_polygons_to_mask([[10, 10, 20, 10, 20, 20, 10, 20]], 40, 40)
    expected = np.zeros((40, 40), bool)
    expected[10:20, 10:20] = True
    assert m.sum() == 100 and np.array_equal(m, expected)  # cv2.fillPoly would give 121


def test_pixel_centres_decide_and_area_is_kept():
    # half-pixel edges: x from 10.5 to 12.5 covers the centres 10.5? no (half-open: 10.5 <= c <
    # 12.5) -> 10.5, 11.5
    m = coco_polygons_to_mask([[10.5, 0, 12.5, 0, 12.5, 1, 10.5, 1]], 2, 20)
    assert np.flatnonzero(m[0]).tolist() == [10, 11] and m[1].sum() == 0
    tri = [5.3, 5.7, 30.2, 8.1, 9.0, 33.4]
    x, y = np.array(tri[0::2]), np.array(tri[1::2])
    area = 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
    assert abs(coco_polygons_to_mask([tri], 40, 40).sum() - area) < 0.05 * area


def test_polygons_of_one_object_are_united_and_clipped_to_the_image():
    m = coco_polygons_to_mask(
        [[0, 0, 4, 0, 4, 4, 0, 4], [2, 2, 6, 2, 6, 6, 2, 6], [8, 8, 12, 8, 12, 12, 8, 12]], 10, 10
    )
    assert m.sum() == 16 + 16 - 4 + 4  # the third square is cut at the border (8..9)
    assert coco_polygons_to_mask([[1, 1, 2, 2]], 5, 5).sum() == 0  # degenerate polygon


def test_uncompressed_rle_is_column_major_starting_with_zeros():
    m = rle_to_mask({"size": [2, 3], "counts": [1, 2, 3]})
    assert m.astype(int).tolist() == [[0, 1, 0], [1, 0, 0]]
    with pytest.raises(ValueError, match="sum"):
        rle_to_mask({"size": [2, 3], "counts": [1, 2]})


def test_compressed_rle_strings_decoded_by_hand():
    # counts < 32 are one character chr(48 + c); from the 4th count on the difference to
    # counts[i-2] is stored: [2, 3, 1, 5] -> 5 - 3 = 2 -> "2"; [5, 3, 1, 1] -> 1 - 3 = -2 -> 30
    # (sign bit set)
    # -> "N"
    assert rle_counts_from_string("231") == [2, 3, 1]
    assert rle_counts_from_string("2312") == [2, 3, 1, 5]
    assert rle_counts_from_string("531N") == [5, 3, 1, 1]
    assert rle_counts_from_string(b"0") == [0]
    # 100 = 0b11_00100: low group 4 with "more" (0x20) -> chr(48 + 36) = "T", then 3 -> "3"
    assert rle_counts_from_string("T3") == [100]
    with pytest.raises(ValueError):
        rle_counts_from_string("T")  # "more" set on the last character


def test_segmentation_dispatch_and_size_check():
    poly = coco_segmentation_to_mask([[0, 0, 2, 0, 2, 2, 0, 2]], 4, 4)
    rle = coco_segmentation_to_mask({"size": [4, 4], "counts": [0, 2, 2, 2, 10]}, 4, 4)
    assert poly.sum() == 4 and np.array_equal(poly, rle)
    with pytest.raises(ValueError, match="size"):
        coco_segmentation_to_mask({"size": [2, 8], "counts": [16]}, 4, 4)


def test_phrasecut_polygons_follow_the_phrasecut_api():
    # PhraseCut's API: int() the points, PIL polygon with outline -> a 10 x 10 square spans 11 x 11
    # pixels
    m = phrasecut_polygons_to_mask([[[[10, 10], [20, 10], [20, 20], [10, 20]]]], 40, 40)
    assert m.sum() == 121
    pts = [[5.3, 5.7], [30.2, 8.1], [9.0, 33.4]]
    ref = Image.new("L", (40, 40), 0)
    ImageDraw.Draw(ref).polygon([(int(x), int(y)) for x, y in pts], outline=1, fill=1)
    two = phrasecut_polygons_to_mask([[pts], [[[0, 0], [3, 0], [3, 3]], [[1, 1]]]], 40, 40)
    assert np.array_equal(two[6:], (np.asarray(ref) > 0)[6:]) and two[0, 0]
