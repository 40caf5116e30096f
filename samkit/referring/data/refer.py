"""Index of a RefCOCO-family dataset from its standard files (Python 3, over pycocotools).

Layouts (``root`` is the folder holding one sub-folder per dataset, as for ``REFER(data_root, ...)``):

========== ========== ============================================= ====================================
dataset    split_by   annotation files under ``root/<dataset>/``    images (first that exists)
========== ========== ============================================= ====================================
refcoco    unc        ``refs(unc).p``, ``instances.json``            ``root/images/mscoco/images/train2014``,
refcoco+   unc        ``refs(unc).p``, ``instances.json``            ``root/images/train2014``
refcocog   umd|google ``refs(umd).p`` / ``refs(google).p``, ...      (same)
grefcoco   unc        ``grefs(unc).json`` (or ``.p``), ``instances.json`` (same)
ref-zom    final      ``refs(final).p``, ``instances.json``          ``root/images/trainval2014``, then the above
========== ========== ============================================= ====================================

Pickles are read with :func:`~samkit.referring.data.safe_pickle.load_plain_pickle`. Split names follow
``refer.py``: ``testA`` / ``testB`` / ``testC`` select every split containing that letter, ``test``
every split containing "test", anything else an exact match (gRefCOCO: exact match only).

No-target refs: gRefCOCO ``ann_id == [-1]`` and Ref-ZOM ``source == "zero"`` give an empty mask.
Masks are the union of the referred annotations (gRefCOCO skips crowd annotations, as ReLA does).
Official quirk (``official_compat=True``): LAVT / CARIS build a RefCOCO mask as ``sum of polygon
masks == 1``, so where two polygons of one object overlap the pixel becomes background.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from samkit.errors import InputError
from samkit.referring.data.safe_pickle import load_plain_pickle

SPLIT_BY = {
    "refcoco": ("unc",),
    "refcoco+": ("unc",),
    "refcocog": ("umd", "google"),
    "grefcoco": ("unc",),
    "ref-zom": ("final",),
}
NO_TARGET_ANN = -1
ZERO_SOURCE = "zero"
_IMAGE_DIRS = ("images/mscoco/images/train2014", "images/train2014")
_ZOM_IMAGE_DIR = "images/trainval2014"


@dataclass(frozen=True)
class ReferEntry:
    """One referent: its image, annotations and expressions."""

    ref_id: int
    image_id: int
    file_name: str
    height: int
    width: int
    ann_ids: tuple[int, ...]
    sentences: tuple[str, ...]
    split: str
    no_target: bool


def annotation_files(root: str | Path, dataset: str, split_by: str | None = None) -> tuple[Path, Path]:
    """(refs file, instances.json) of a dataset; a missing file -> InputError naming it."""
    if dataset not in SPLIT_BY:
        raise InputError(f"unknown referring dataset {dataset!r}; expected one of {sorted(SPLIT_BY)}")
    split_by = split_by or SPLIT_BY[dataset][0]
    if split_by not in SPLIT_BY[dataset]:
        raise InputError(f"{dataset} is split by {' or '.join(SPLIT_BY[dataset])}, not {split_by!r}")
    data_dir = Path(root) / dataset
    if dataset == "grefcoco":
        candidates = [data_dir / f"grefs({split_by}).json", data_dir / f"grefs({split_by}).p"]
    else:
        candidates = [data_dir / f"refs({split_by}).p"]
    refs = next((c for c in candidates if c.is_file()), None)
    if refs is None:
        raise InputError(f"dataset root {root} is missing its annotation file {candidates[0]}")
    instances = data_dir / "instances.json"
    if not instances.is_file():
        raise InputError(f"dataset root {root} is missing its annotation file {instances}")
    return refs, instances


def _split_matches(wanted: str, split: str, exact: bool) -> bool:
    if exact or wanted in ("train", "val"):
        return split == wanted
    if wanted in ("testA", "testB", "testC"):
        return wanted[-1] in split and "test" in split
    if wanted == "test":
        return "test" in split
    return split == wanted


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


class ReferIndex:
    """Refs, images and annotations of one dataset, with masks decoded by pycocotools."""

    def __init__(
        self,
        root: str | Path,
        dataset: str = "refcoco",
        split_by: str | None = None,
        image_dir: str | Path | None = None,
    ) -> None:
        self.root = Path(root)
        self.dataset = dataset
        refs_file, instances_file = annotation_files(root, dataset, split_by)
        refs = (
            json.loads(refs_file.read_text()) if refs_file.suffix == ".json" else load_plain_pickle(refs_file)
        )
        try:
            instances = json.loads(instances_file.read_text())
            self._images = {img["id"]: img for img in instances["images"]}
            self._anns = {ann["id"]: ann for ann in instances["annotations"]}
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise InputError(f"{instances_file} is not a COCO instances file: {error}") from error
        if not isinstance(refs, list):
            raise InputError(f"{refs_file} must hold a list of refs, got {type(refs).__name__}")
        self._refs = [self._entry(ref, refs_file) for ref in refs]
        self.image_dir = Path(image_dir) if image_dir is not None else self._default_image_dir()

    def _entry(self, ref: dict, refs_file: Path) -> ReferEntry:
        try:
            ann_ids = tuple(int(a) for a in _as_list(ref["ann_id"]))
            no_target = ann_ids == (NO_TARGET_ANN,) or ref.get("source") == ZERO_SOURCE
            image = self._images[ref["image_id"]]
            for ann_id in ann_ids:
                if not no_target and ann_id not in self._anns:
                    raise KeyError(f"annotation {ann_id}")
            sentences = tuple(s.get("raw", s.get("sent", "")) for s in ref["sentences"])
            return ReferEntry(
                ref_id=int(ref["ref_id"]),
                image_id=int(ref["image_id"]),
                file_name=str(image["file_name"]),
                height=int(image["height"]),
                width=int(image["width"]),
                ann_ids=ann_ids,
                sentences=sentences,
                split=str(ref["split"]),
                no_target=bool(no_target),
            )
        except (KeyError, TypeError, AttributeError) as error:
            raise InputError(
                f"{refs_file}: ref {ref.get('ref_id', '?')} is malformed or unknown: {error}"
            ) from error

    def _default_image_dir(self) -> Path:
        names = (_ZOM_IMAGE_DIR, *_IMAGE_DIRS) if self.dataset == "ref-zom" else _IMAGE_DIRS
        for name in names:
            if (self.root / name).is_dir():
                return self.root / name
        return self.root / names[0]

    @property
    def splits(self) -> list[str]:
        """The split names present in the refs file."""
        return sorted({entry.split for entry in self._refs})

    def refs(self, split: str | None = None) -> list[ReferEntry]:
        """The refs of a split (all refs when None); an unknown split -> InputError."""
        if split is None:
            return list(self._refs)
        chosen = [e for e in self._refs if _split_matches(split, e.split, exact=self.dataset == "grefcoco")]
        if not chosen:
            raise InputError(f"{self.dataset} has no ref in split {split!r}; splits present: {self.splits}")
        return chosen

    def image_path(self, entry: ReferEntry) -> Path:
        return self.image_dir / entry.file_name

    def mask(self, entry: ReferEntry, official_compat: bool = False) -> np.ndarray:
        """(H, W) uint8 {0, 1} mask of the referred annotation(s); zeros for a no-target ref."""
        from pycocotools import mask as mask_utils

        merged = np.zeros((entry.height, entry.width), dtype=np.uint8)
        if entry.no_target:
            return merged
        for ann_id in entry.ann_ids:
            ann = self._anns[ann_id]
            if self.dataset == "grefcoco" and ann.get("iscrowd", 0):
                continue
            segmentation = ann["segmentation"]
            if isinstance(segmentation, list) or isinstance(segmentation.get("counts"), list):
                rle = mask_utils.frPyObjects(segmentation, entry.height, entry.width)
            else:
                rle = segmentation
            decoded = mask_utils.decode(rle)
            counts = decoded.sum(axis=2) if decoded.ndim == 3 else decoded
            if official_compat and self.dataset in ("refcoco", "refcoco+", "refcocog"):
                merged |= (counts == 1).astype(np.uint8)
            else:
                merged |= (counts > 0).astype(np.uint8)
        return merged
