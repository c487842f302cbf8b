"""Dataset readers on tiny fixture datasets in the refer and PhraseCut formats
(eval_fixtures.py).
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from eval_fixtures import A, B, C, D, H, W, block, write_phrasecut, write_refer

from iterprime_ros.tools.eval.datasets import (
    COCO_CATEGORY_NAMES,
    DataPaths,
    DatasetError,
    DatasetLoader,
    PhraseCutDataset,
    ReferDataset,
    is_unseen_category,
    load_image,
    parse_dataset_arg,
)


def test_refer_samples_one_per_sentence_with_their_masks(tmp_path):
    root = write_refer(tmp_path / "refer")
    ds = ReferDataset(root, "refcoco")
    assert ds.splits() == ["testA", "train", "val"]
    val = ds.samples("val")
    assert [s.sample_id for s in val] == ["1/10", "1/11", "2/20", "3/30"]  # by image, then id
    assert [s.expression for s in val] == [
        "the left box",
        "red square",
        "blue thing on the right",
        "green block",
    ]
    assert (
        val[0].image_path.name == "COCO_train2014_000000000001.jpg" and val[0].image_path.is_file()
    )
    assert val[0].category == "person" and val[2].category == "dining table"
    assert np.array_equal(val[0].gt_mask(H, W), block(*A)) and val[0].gt_mask(H, W).sum() == 256
    assert np.array_equal(val[2].gt_mask(H, W), block(*B))
    assert np.array_equal(val[3].gt_mask(H, W), block(*C))
    (testa,) = ds.samples("testA")
    assert np.array_equal(testa.gt_mask(H, W), block(*D))  # stored as RLE
    with pytest.raises(DatasetError, match="instances.json says"):
        val[0].gt_mask(H + 1, W)
    img = load_image(val[0].image_path)
    assert img.shape == (H, W, 3) and img.dtype == np.uint8


def test_refer_errors_name_the_file_and_the_splits(tmp_path):
    with pytest.raises(DatasetError, match=r"refs\(umd\)"):
        ReferDataset(tmp_path, "refcocog")
    root = write_refer(tmp_path / "g", "refcocog", "umd", suffix=".pickle")
    ds = ReferDataset(root, "refcocog")
    with pytest.raises(DatasetError, match="has no split 'testB'.*testA, train, val"):
        ds.samples("testB")
    with pytest.raises(ValueError, match="unknown dataset"):
        ReferDataset(root, "refclef")


def test_refs_pickle_may_hold_plain_data_only(tmp_path):
    root = write_refer(tmp_path / "refer")
    with (root / "refcoco" / "refs(unc).p").open("wb") as f:
        pickle.dump([{"ref_id": 1, "when": np.float64(1.0)}], f)  # a class reference
    with pytest.raises(DatasetError, match="only plain data"):  # one line, naming the file
        ReferDataset(root, "refcoco")


def test_phrasecut_samples_union_of_instances_and_the_unseen_rule(tmp_path):
    root = write_phrasecut(tmp_path / "pc")
    ds = PhraseCutDataset(root)
    assert ds.splits() == ["test"]
    samples = ds.samples("test")
    assert [(s.sample_id, s.category, s.subsets) for s in samples] == [
        ("t1", "man", ("unseen",)),
        ("t2", "dining table", ()),
        ("t3", "traffic cone", ("unseen",)),
    ]
    t1 = samples[0].gt_mask(H, W)
    assert (
        t1.sum() == 200 and t1[2:12, 2:12].all() and t1[2:12, 20:30].all()
    )  # two 10 x 10 instances
    assert samples[2].image_path.name == "102.jpg"
    with pytest.raises(DatasetError, match="refer_val.json not found.*test"):
        ds.samples("val")


def test_unseen_is_an_exact_match_against_the_80_coco_names():
    assert len(COCO_CATEGORY_NAMES) == 80 == len(set(COCO_CATEGORY_NAMES))
    assert not is_unseen_category("dining table") and not is_unseen_category("  Dining  Table ")
    assert is_unseen_category("man") and is_unseen_category("table") and is_unseen_category("cups")


def test_dataset_arguments_and_loader(tmp_path):
    assert parse_dataset_arg(["refcoco"]) == [
        ("refcoco", "val"),
        ("refcoco", "testA"),
        ("refcoco", "testB"),
    ]
    assert parse_dataset_arg(["refcocog:test", "phrasecut"]) == [
        ("refcocog", "test"),
        ("phrasecut", "test"),
    ]
    assert parse_dataset_arg(["refcoco+", "refcoco"], ["val"]) == [
        ("refcoco+", "val"),
        ("refcoco", "val"),
    ]
    with pytest.raises(ValueError, match="refcocog has no split 'testA'"):
        parse_dataset_arg(["refcocog"], ["testA"])
    with pytest.raises(ValueError, match="unknown dataset"):
        parse_dataset_arg(["coco"])
    loader = DatasetLoader(DataPaths(refer_root=write_refer(tmp_path / "r")))
    assert len(loader.samples("refcoco", "val")) == 4
    with pytest.raises(DatasetError, match="--phrasecut-root"):
        loader.samples("phrasecut", "test")
