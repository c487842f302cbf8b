"""Readers for the benchmarks the paper reports on, from the files a user has on disk.

* RefCOCO, RefCOCO+ (split "unc") and RefCOCOg (split "umd") in the layout of the public
  ``refer`` toolkit::

      DATA_ROOT/refcoco/refs(unc).p        (or .pickle) list of refs: ref_id, ann_id, image_id,
      DATA_ROOT/refcoco/instances.json     split, sentences [{sent, raw, tokens, sent_id}], ...
      IMAGE_ROOT/COCO_train2014_000000xxxxxx.jpg   the images; IMAGE_ROOT defaults to
                                                   DATA_ROOT/images/mscoco/images/train2014

  One sample per (ref, sentence); the expression is the sentence's ``sent`` (the lower-cased,
  tokenised form every published number uses); the target is the ref's annotation mask.
* PhraseCut (VGPhraseCut v0): ``ROOT/refer_{split}.json`` (a list of tasks: task_id, image_id,
  phrase, Polygons, instance_boxes, phrase_structure) and ``ROOT/images/{image_id}.jpg``. The
  target is the union of all instances' polygons.

  **Unseen** (the paper's PhraseCut "Unseen" column, following Global-Local CLIP, whose protocol
  the paper reuses): a task is Unseen when its category name, ``phrase_structure["name"]``,
  stripped and lower-cased, is *not* exactly one of the 80 COCO category names in
  ``COCO_CATEGORY_NAMES``. No lemmatising and no synonyms: "men" and "man" are Unseen although
  "person" is a COCO category -- that is the published rule, and the Mask2Former proposals were
  trained on these 80 names.

Images are decoded with PIL *without* applying EXIF orientation: the annotations are in the
stored pixel grid (cv2.imread would rotate a few COCO images and misalign their masks).
"""

from __future__ import annotations

import heapq
import json
import logging
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from PIL import Image

from ...image_size import DEFAULT_MAX_IMAGE_PIXELS, read_limit_bytes
from .masks import coco_segmentation_to_mask, phrasecut_polygons_to_mask

log = logging.getLogger(__name__)

# The 80 COCO "things" categories, as named in COCO's instances_*.json.
COCO_CATEGORY_NAMES: tuple[str, ...] = (
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
)
_COCO_NAMES = frozenset(COCO_CATEGORY_NAMES)

UNSEEN = "unseen"


class DatasetError(RuntimeError):
    """A dataset file is missing or malformed; the message names the file and the fix."""


@dataclass(frozen=True)
class ReferSpec:
    """Where a refer-format dataset lives and which splits it has."""

    folder: str
    split_by: str
    eval_splits: tuple[str, ...]
    all_splits: tuple[str, ...]


REFER_DATASETS: dict[str, ReferSpec] = {
    "refcoco": ReferSpec(
        "refcoco", "unc", ("val", "testA", "testB"), ("train", "val", "testA", "testB")
    ),
    "refcoco+": ReferSpec(
        "refcoco+", "unc", ("val", "testA", "testB"), ("train", "val", "testA", "testB")
    ),
    "refcocog": ReferSpec("refcocog", "umd", ("val", "test"), ("train", "val", "test")),
}
PHRASECUT = "phrasecut"
PHRASECUT_EVAL_SPLITS: tuple[str, ...] = ("test",)
PHRASECUT_SPLITS: tuple[str, ...] = ("train", "val", "test", "miniv")
DATASET_NAMES: tuple[str, ...] = (*REFER_DATASETS, PHRASECUT)


def eval_splits(dataset: str) -> tuple[str, ...]:
    """The splits the paper reports for `dataset`."""
    return PHRASECUT_EVAL_SPLITS if dataset == PHRASECUT else _refer_spec(dataset).eval_splits


def all_splits(dataset: str) -> tuple[str, ...]:
    return PHRASECUT_SPLITS if dataset == PHRASECUT else _refer_spec(dataset).all_splits


def _refer_spec(dataset: str) -> ReferSpec:
    try:
        return REFER_DATASETS[dataset]
    except KeyError:
        raise ValueError(
            f"unknown dataset {dataset!r}; known: {', '.join(DATASET_NAMES)}"
        ) from None


# ---------------------------------------------------------------------------- targets
@dataclass(frozen=True)
class CocoTarget:
    """A COCO annotation's segmentation (polygons or RLE) at the annotated image size."""

    segmentation: Any
    height: int
    width: int

    def mask(self, height: int, width: int) -> np.ndarray:
        if (height, width) != (self.height, self.width):
            raise DatasetError(
                f"the image is {width} x {height} but instances.json says "
                f"{self.width} x {self.height}"
            )
        return coco_segmentation_to_mask(self.segmentation, height, width)


@dataclass(frozen=True)
class PhraseCutTarget:
    """PhraseCut ``Polygons``: per instance, a list of polygons of [x, y] points."""

    polygons: Any

    def mask(self, height: int, width: int) -> np.ndarray:
        return phrasecut_polygons_to_mask(self.polygons, height, width)


@dataclass(frozen=True)
class Sample:
    """One (image, expression, ground-truth mask) to evaluate.

    sample_id is unique within (dataset, split) and stable across runs: it is the resume key.
    subsets: extra groups the sample belongs to (PhraseCut: "unseen").
    """

    sample_id: str
    dataset: str
    split: str
    image_id: int | str
    image_path: Path
    expression: str
    category: str = ""
    subsets: tuple[str, ...] = ()
    target: CocoTarget | PhraseCutTarget | None = field(default=None, compare=False, repr=False)

    def gt_mask(self, height: int, width: int) -> np.ndarray:
        """H x W bool ground truth at the image's original resolution."""
        if self.target is None:
            raise DatasetError(f"sample {self.sample_id} has no target")
        return self.target.mask(height, width)


def load_image(path: str | Path) -> np.ndarray:
    """H x W x 3 uint8 RGB in the stored pixel grid (no EXIF rotation: see the module
    docstring).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except OSError as exc:
        raise DatasetError(f"cannot read image {path}: {exc}") from exc


# ---------------------------------------------------------------------------- refer
class _PlainDataUnpickler(pickle.Unpickler):
    """Loads only plain containers and scalars: a refs file needs no classes, and refusing them
    means a tampered pickle cannot run code.
    """

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(
            f"refs file references {module}.{name}; only plain data is allowed"
        )


def _load_refs(
    path: Path, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> list[dict[str, Any]]:
    _check_read_limit(path, max_image_pixels)
    with path.open("rb") as f:
        try:
            try:
                refs = _PlainDataUnpickler(f).load()
            except UnicodeDecodeError:  # Python 2 pickles with non-ASCII byte strings
                f.seek(0)
                refs = _PlainDataUnpickler(f, encoding="latin1").load()
        except (pickle.UnpicklingError, EOFError, ValueError) as exc:
            raise DatasetError(f"{path}: not a plain refs pickle: {exc}") from None
    if not isinstance(refs, list):
        raise DatasetError(f"{path}: expected a list of refs, got {type(refs).__name__}")
    return refs


def _check_read_limit(path: Path, max_image_pixels: int) -> None:
    """Refuse a dataset file bigger than the read limit before reading a byte of it.

    The limit is the one every reader of the tools applies (image_size.read_limit_bytes of
    this run's --max-image-pixels): an annotation file bigger than the biggest image eval would
    accept is not one this run can use, and reading it whole could take the machine's memory.
    """
    limit = read_limit_bytes(max_image_pixels)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DatasetError(f"{path}: {exc}") from exc
    if limit and size > limit:
        raise DatasetError(
            f"{path}: {size} bytes, over the read limit of {limit} bytes; refused before "
            f"reading it (the limit follows --max-image-pixels, here {max_image_pixels}: check "
            "that this is the dataset's annotation file, and raise it only for a file you trust)"
        )


def _read_json(path: Path, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Any:
    """A dataset's JSON file, refused up front when it is over the read limit."""
    _check_read_limit(path, max_image_pixels)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: {exc}") from exc


def _image_path(root: Path, name: str, source: str) -> Path:
    """`root`/`name`, refusing a name that leads outside `root` (an absolute path or ..): an
    annotation file must not make eval read files outside its image folder.
    """
    parts = Path(name).parts
    if not name or Path(name).is_absolute() or ".." in parts:
        raise DatasetError(
            f"{source}: image file name {name!r} leads outside the image folder {root}; "
            "refused (image names must be relative and stay inside that folder)"
        )
    return root / name


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class ReferDataset:
    """RefCOCO / RefCOCO+ / RefCOCOg from the refer layout; files are read once per dataset."""

    def __init__(
        self,
        data_root: str | Path,
        dataset: str,
        image_root: str | Path | None = None,
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    ) -> None:
        self.name = dataset
        self.spec = _refer_spec(dataset)
        self.data_root = Path(data_root)
        self.image_root = (
            Path(image_root)
            if image_root
            else self.data_root / "images" / "mscoco" / "images" / "train2014"
        )
        folder = self.data_root / self.spec.folder
        stem = f"refs({self.spec.split_by})"
        candidates = [folder / f"{stem}.p", folder / f"{stem}.pickle"]
        refs_path = next((p for p in candidates if p.is_file()), None)
        if refs_path is None:
            raise DatasetError(
                f"{dataset}: no {stem}.p or {stem}.pickle in {folder} (expected the refer layout: "
                f"DATA_ROOT/{self.spec.folder}/{stem}.p and instances.json; see "
                "docs/evaluation.md)"
            )
        instances_path = folder / "instances.json"
        if not instances_path.is_file():
            raise DatasetError(
                f"{dataset}: {instances_path} not found (the COCO annotations of the refer layout)"
            )
        self.refs = _load_refs(refs_path, max_image_pixels)
        self.instances_path = instances_path
        instances = _read_json(instances_path, max_image_pixels)
        self.images = {int(im["id"]): im for im in instances.get("images", [])}
        self.annotations = {int(a["id"]): a for a in instances.get("annotations", [])}
        self.categories = {
            int(c["id"]): c.get("name", "") for c in instances.get("categories", [])
        }

    def splits(self) -> list[str]:
        return sorted({_text(r.get("split", "")) for r in self.refs})

    def samples(self, split: str, limit: int | None = None) -> list[Sample]:
        """The (ref, sentence) pairs of `split`, ordered by image so per-image work is reused;
        with `limit`, only the first `limit` of that order.

        The limit is applied to light (image id, sample id) keys before any Sample is built:
        a refs file can share one sentence list between many refs (pickle memo), so a few KB
        may stand for millions of pairs, and --limit 100 must not build them all.
        """
        present = self.splits()
        if split not in present:
            raise DatasetError(
                f"{self.name} ({self.spec.split_by}) has no split {split!r}; "
                f"the refs file has: {', '.join(present)}"
            )
        keys = (
            (int(ref["image_id"]), f"{ref['ref_id']}/{sent.get('sent_id', k)}", r, k)
            for r, ref in enumerate(self.refs)
            if _text(ref.get("split", "")) == split
            for k, sent in enumerate(ref.get("sentences", []))
        )
        chosen = sorted(keys) if limit is None else heapq.nsmallest(limit, keys)
        return [self._sample(self.refs[r], k, split) for _, _, r, k in chosen]

    def _sample(self, ref: dict[str, Any], k: int, split: str) -> Sample:
        ann = self.annotations.get(int(ref["ann_id"]))
        image = self.images.get(int(ref["image_id"]))
        if ann is None or image is None:
            raise DatasetError(
                f"{self.name}: ref {ref.get('ref_id')} points to annotation "
                f"{ref.get('ann_id')} / "
                f"image {ref.get('image_id')} missing from instances.json"
            )
        file_name = image.get("file_name") or f"COCO_train2014_{int(ref['image_id']):012d}.jpg"
        target = CocoTarget(ann["segmentation"], int(image["height"]), int(image["width"]))
        category = self.categories.get(int(ref.get("category_id", ann.get("category_id", -1))), "")
        sent = ref["sentences"][k]
        return Sample(
            sample_id=f"{ref['ref_id']}/{sent.get('sent_id', k)}",
            dataset=self.name,
            split=split,
            image_id=int(ref["image_id"]),
            image_path=_image_path(self.image_root, _text(file_name), str(self.instances_path)),
            expression=_text(sent.get("sent", sent.get("raw", ""))).strip(),
            category=category,
            target=target,
        )


# ---------------------------------------------------------------------------- PhraseCut
def is_unseen_category(name: str) -> bool:
    """PhraseCut "Unseen": the category name is not exactly one of the 80 COCO names (module
    docstring).
    """
    return " ".join(name.lower().split()) not in _COCO_NAMES


class PhraseCutDataset:
    """VGPhraseCut ``refer_{split}.json`` + ``images/`` (see the module docstring)."""

    def __init__(
        self,
        root: str | Path,
        image_root: str | Path | None = None,
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    ) -> None:
        self.name = PHRASECUT
        self.root = Path(root)
        self.image_root = Path(image_root) if image_root else self.root / "images"
        self.max_image_pixels = max_image_pixels

    def splits(self) -> list[str]:
        return sorted(p.stem[len("refer_") :] for p in self.root.glob("refer_*.json"))

    def samples(self, split: str, limit: int | None = None) -> list[Sample]:
        """The tasks of `split` with a polygon, ordered by image; with `limit`, the first."""
        path = self.root / f"refer_{split}.json"
        if not path.is_file():
            found = ", ".join(self.splits()) or "none"
            raise DatasetError(
                f"phrasecut: {path} not found (splits found in {self.root}: {found})"
            )
        tasks = _read_json(path, self.max_image_pixels)
        out: list[Sample] = []
        skipped = 0
        for task in tasks:
            polygons = task.get("Polygons") or []
            if not any(len(poly) >= 2 for inst in polygons for poly in inst):
                skipped += 1
                continue
            structure = task.get("phrase_structure") or {}
            category = " ".join(str(structure.get("name") or "").lower().split())
            out.append(
                Sample(
                    sample_id=str(task["task_id"]),
                    dataset=PHRASECUT,
                    split=split,
                    image_id=task["image_id"],
                    image_path=_image_path(self.image_root, f"{task['image_id']}.jpg", str(path)),
                    expression=str(task.get("phrase", "")).strip(),
                    category=category,
                    subsets=(UNSEEN,) if is_unseen_category(category) else (),
                    target=PhraseCutTarget(polygons),
                )
            )
        if skipped:
            log.warning("phrasecut %s: skipped %d tasks without a polygon", split, skipped)
        out.sort(key=lambda s: (str(s.image_id), s.sample_id))
        return out if limit is None else out[:limit]


# ---------------------------------------------------------------------------- entry point
@dataclass(frozen=True)
class DataPaths:
    """Where the user keeps the data (CLI flags)."""

    refer_root: Path | None = None
    coco_images: Path | None = None
    phrasecut_root: Path | None = None
    phrasecut_images: Path | None = None


class DatasetLoader:
    """Opens each dataset once and hands out the samples of (dataset, split); every file it
    reads is held to the read limit of `max_image_pixels` (the run's --max-image-pixels).
    """

    def __init__(self, paths: DataPaths, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> None:
        self.paths = paths
        self.max_image_pixels = max_image_pixels
        self._open: dict[str, ReferDataset | PhraseCutDataset] = {}

    def dataset(self, name: str) -> ReferDataset | PhraseCutDataset:
        if name not in self._open:
            if name == PHRASECUT:
                if self.paths.phrasecut_root is None:
                    raise DatasetError(
                        "phrasecut needs --phrasecut-root (the folder with refer_test.json and "
                        "images/)"
                    )
                self._open[name] = PhraseCutDataset(
                    self.paths.phrasecut_root, self.paths.phrasecut_images, self.max_image_pixels
                )
            else:
                _refer_spec(name)
                if self.paths.refer_root is None:
                    raise DatasetError(
                        f"{name} needs --data-root (the refer data folder holding {name}/)"
                    )
                self._open[name] = ReferDataset(
                    self.paths.refer_root, name, self.paths.coco_images, self.max_image_pixels
                )
        return self._open[name]

    def samples(self, name: str, split: str, limit: int | None = None) -> list[Sample]:
        return self.dataset(name).samples(split, limit)


def parse_dataset_arg(values: Iterable[str], splits: Iterable[str] = ()) -> list[tuple[str, str]]:
    """CLI ``--dataset refcoco --dataset refcocog:test --split val`` -> [(dataset, split), ...].

    "NAME:SPLIT" names one split; a bare NAME takes the --split values, or the paper's evaluation
    splits when none are given.
    """
    extra = list(splits)
    out: list[tuple[str, str]] = []
    for value in values:
        name, _, split = value.partition(":")
        name = name.strip().lower()
        if name not in DATASET_NAMES:
            raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASET_NAMES)}")
        chosen = [split] if split else (extra or list(eval_splits(name)))
        for s in chosen:
            if s not in all_splits(name):
                raise ValueError(
                    f"{name} has no split {s!r}; its splits: {', '.join(all_splits(name))}"
                )
            if (name, s) not in out:
                out.append((name, s))
    return out
