"""Tiny on-disk datasets in the refer and PhraseCut formats, written by the eval tests.

Hand-checkable by design (images 64 x 48): every ground-truth area and the overlaps used by
the scripted fake predictor are small integers, so the expected metrics are written out by
hand in the tests. Not a test module (no test_ prefix); imported by test_eval_*.py.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

W, H = 64, 48


def rect(x0: int, y0: int, x1: int, y1: int) -> list[float]:
    """COCO polygon of the pixel block x0 <= x < x1, y0 <= y < y1 (pycocotools rule: exactly that
    block).
    """
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def block(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def rle_of(mask: np.ndarray) -> dict:
    """Uncompressed COCO RLE (column-major runs, zeros first)."""
    flat = mask.T.reshape(-1).astype(np.uint8)
    counts, current, run = [], 0, 0
    for v in flat:
        if v == current:
            run += 1
        else:
            counts.append(run)
            current, run = v, 1
    counts.append(run)
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def _image(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(path)


# Objects: A (image 1) 16 x 16 = 256 px, B (image 1) 16 x 20 = 320 px, C (image 2) 20 x 20 = 400
# px, D (image 2, stored as RLE) 10 x 8 = 80 px.
A = (8, 8, 24, 24)
B = (40, 10, 56, 30)
C = (10, 20, 30, 40)
D = (40, 30, 50, 38)

REFER_SENTENCES = {  # (ref_id, sent_id) -> sentence
    (1, 10): "the left box",
    (1, 11): "red square",
    (2, 20): "blue thing on the right",
    (3, 30): "green block",
    (4, 40): "the small patch",
    (5, 50): "a train sample",
}


def write_refer(
    root: Path, dataset: str = "refcoco", split_by: str = "unc", suffix: str = ".p"
) -> Path:
    """DATA_ROOT/{dataset}/refs({split_by}).p + instances.json + COCO-named images; returns
    DATA_ROOT.
    """
    folder = root / dataset
    folder.mkdir(parents=True, exist_ok=True)
    images = [
        {"id": i, "file_name": f"COCO_train2014_{i:012d}.jpg", "height": H, "width": W}
        for i in (1, 2)
    ]
    anns = [
        {"id": 101, "image_id": 1, "category_id": 1, "segmentation": [rect(*A)], "iscrowd": 0},
        {"id": 102, "image_id": 1, "category_id": 2, "segmentation": [rect(*B)], "iscrowd": 0},
        {"id": 103, "image_id": 2, "category_id": 1, "segmentation": [rect(*C)], "iscrowd": 0},
        {
            "id": 104,
            "image_id": 2,
            "category_id": 2,
            "segmentation": rle_of(block(*D)),
            "iscrowd": 1,
        },
    ]
    cats = [{"id": 1, "name": "person"}, {"id": 2, "name": "dining table"}]
    (folder / "instances.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats})
    )
    ref_rows = [
        (1, 1, 101, "val"),
        (2, 1, 102, "val"),
        (3, 2, 103, "val"),
        (4, 2, 104, "testA"),
        (5, 1, 101, "train"),
    ]
    refs = []
    for ref_id, image_id, ann_id, split in ref_rows:
        sents = [
            {"sent_id": s, "sent": t, "raw": t.capitalize() + ".", "tokens": t.split()}
            for (r, s), t in REFER_SENTENCES.items()
            if r == ref_id
        ]
        refs.append(
            {
                "ref_id": ref_id,
                "ann_id": ann_id,
                "image_id": image_id,
                "split": split,
                "category_id": next(a["category_id"] for a in anns if a["id"] == ann_id),
                "sentences": sents,
            }
        )
    with (folder / f"refs({split_by}){suffix}").open("wb") as f:
        pickle.dump(refs, f, protocol=2)
    for im in images:
        _image(root / "images" / "mscoco" / "images" / "train2014" / im["file_name"], im["id"])
    return root


def phrase_polygon(x0: int, y0: int, x1: int, y1: int) -> list[list[float]]:
    """PhraseCut polygon (list of [x, y]); with its outline the fill covers x0..x1, y0..y1
    inclusive.
    """
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


PHRASECUT_TASKS = [
    # task_id, image_id, phrase, category, instances (each a list of polygons)
    (
        "t1",
        101,
        "man on the left",
        "man",
        [[phrase_polygon(2, 2, 11, 11)], [phrase_polygon(20, 2, 29, 11)]],
    ),
    ("t2", 101, "wooden dining table", "dining table", [[phrase_polygon(30, 20, 49, 39)]]),
    ("t3", 102, "orange traffic cone", "traffic cone", [[phrase_polygon(5, 5, 14, 24)]]),
]


def write_phrasecut(root: Path, split: str = "test") -> Path:
    """ROOT/refer_{split}.json + ROOT/images/{image_id}.jpg; returns ROOT."""
    tasks = []
    for task_id, image_id, phrase, cat, polys in PHRASECUT_TASKS:
        boxes = [
            [p[0][0][0], p[0][0][1], p[0][2][0] - p[0][0][0], p[0][2][1] - p[0][0][1]]
            for p in polys
        ]
        tasks.append(
            {
                "task_id": task_id,
                "image_id": image_id,
                "phrase": phrase,
                "ann_ids": [],
                "instance_boxes": boxes,
                "Polygons": polys,
                "phrase_structure": {
                    "name": cat,
                    "attributes": [],
                    "relation_descriptions": [],
                    "type": "name",
                },
            }
        )
    root.mkdir(parents=True, exist_ok=True)
    (root / f"refer_{split}.json").write_text(json.dumps(tasks))
    for image_id in (101, 102):
        _image(root / "images" / f"{image_id}.jpg", image_id)
    return root
