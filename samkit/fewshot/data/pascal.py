"""PASCAL-5i: VOC2012 ``JPEGImages`` + SBD-augmented ``SegmentationClassAug`` labels.

Layout (``root`` is the ``VOC2012`` folder)::

    root/JPEGImages/2007_000033.jpg
    root/SegmentationClassAug/2007_000033.png   # 8-bit class indices 0..20, 255 = ignore

Training pool: VOC2012 train + SBD (``voc_sbd_merge_noduplicate.txt``, 5953 pairs); test pool:
VOC2012 val (``val.txt``, 1449 pairs). Both ship with samkit, in the official order.
"""

from __future__ import annotations

import os
from pathlib import Path

from samkit.errors import InputError
from samkit.fewshot.data.lists import (
    FewShotLists,
    Pair,
    build_lists,
    pascal_fold,
    read_label,
    read_lists,
    read_pairs,
    shipped_path,
)

PASCAL_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
PASCAL_FOLDERS = ("JPEGImages", "SegmentationClassAug")
OFFICIAL_PREFIX = "../data/VOCdevkit2012/VOC2012"  # how the official list files spell the data root
POOL_FILES = {"train": "voc_sbd_merge_noduplicate.txt.gz", "val": "val.txt.gz"}


def check_pascal_root(root: str | os.PathLike[str]) -> Path:
    """``root`` as a Path, or InputError naming the first expected folder that is missing."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"PASCAL-5i root {root} is not a folder: expected the VOC2012 folder")
    for name in PASCAL_FOLDERS:
        if not (root / name).is_dir():
            raise InputError(
                f"PASCAL-5i root {root} lacks the folder {name}/: expected VOC2012 with "
                f"{' and '.join(PASCAL_FOLDERS)} (SBD-augmented labels)"
            )
    return root


def pascal_pool(mode: str) -> list[Pair]:
    """The official source pool of ``mode`` (``train``: VOC train + SBD; ``val``: VOC val), root-relative."""
    if mode not in POOL_FILES:
        raise InputError(f"mode must be 'train' or 'val', got {mode!r}")
    return read_pairs(shipped_path("pascal", POOL_FILES[mode]))


def official_pascal_lists(fold: int, mode: str) -> FewShotLists:
    """The official PASCAL-5i lists of ``fold`` / ``mode`` as shipped (paths root-relative)."""
    pascal_fold(fold)
    if mode not in POOL_FILES:
        raise InputError(f"mode must be 'train' or 'val', got {mode!r}")
    folder = shipped_path("pascal", f"fss_list/{mode}/data_list_{fold}.txt.gz").parent
    return read_lists(folder, fold).relocated(OFFICIAL_PREFIX, "")


def build_pascal_lists(
    root: str | os.PathLike[str],
    fold: int,
    mode: str,
    official_paths: bool = False,
    progress: bool = False,
) -> FewShotLists:
    """Generate the fold's lists from the labels under ``root`` with the official rules.

    Paths are root-relative, or carry the official ``../data/VOCdevkit2012/VOC2012`` prefix with
    ``official_paths=True`` (then ``save()`` writes files byte-identical to the official ones).
    """
    root = check_pascal_root(root)
    split = pascal_fold(fold)
    return build_lists(
        pascal_pool(mode),
        split.classes(mode),
        lambda path: read_label(root / path),
        train=mode == "train",
        prefix=OFFICIAL_PREFIX if official_paths else "",
        progress=progress,
    )
