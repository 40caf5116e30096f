"""COCO-20i: COCO 2014 images with semantic label maps made from the instances JSON.

Layout (``root`` is the COCO 2014 folder)::

    root/train2014/COCO_train2014_000000000009.jpg
    root/val2014/COCO_val2014_000000000042.jpg
    root/annotations/instances_train2014.json       # needed to make the label maps
    root/annotations/train2014/COCO_train2014_000000000009.png   # made by make_label_maps
    root/annotations/val2014/...

Label maps: 0 = background, class ``i`` (1..80) = the i-th COCO category in ascending category-id
order; instances are painted in annotation order (a later instance overwrites an earlier one),
crowd regions included. The official repository ships pre-made PNGs and no script; this rule is
the common one, not verified against those PNGs (see notes).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from samkit.errors import InputError
from samkit.fewshot.data.lists import (
    COCO_NUM_CLASSES,
    FewShotLists,
    Pair,
    build_lists,
    coco_fold,
    read_label,
    read_pairs,
    shipped_path,
)
from samkit.io.atomic import atomic_save_image

OFFICIAL_PREFIX = "../data/MSCOCO2014"
SPLITS = ("train", "val")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise InputError(f"COCO split must be 'train' or 'val', got {split!r}")


def check_coco_root(root: str | os.PathLike[str], split: str, need_json: bool = False) -> Path:
    """``root`` as a Path, or InputError naming the first expected folder / file that is missing."""
    _check_split(split)
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"COCO-20i root {root} is not a folder: expected the COCO 2014 folder")
    expected = [f"{split}2014", "annotations"]
    expected.append(f"annotations/instances_{split}2014.json" if need_json else f"annotations/{split}2014")
    for name in expected:
        if not (root / name).exists():
            raise InputError(
                f"COCO-20i root {root} lacks {name}: expected {split}2014/, annotations/instances_{split}2014.json "
                f"and the label maps annotations/{split}2014/ (samkit.fewshot.data.coco.make_label_maps)"
            )
    return root


def label_map(coco: object, image_id: int) -> np.ndarray:
    """The uint8 HxW label map of one image from a ``pycocotools.coco.COCO`` index."""
    cat_ids = sorted(coco.getCatIds())
    if len(cat_ids) != COCO_NUM_CLASSES:
        raise InputError(f"expected the {COCO_NUM_CLASSES} COCO categories, the JSON has {len(cat_ids)}")
    index = {cat: i + 1 for i, cat in enumerate(cat_ids)}
    info = coco.loadImgs(image_id)[0]
    label = np.zeros((info["height"], info["width"]), dtype=np.uint8)
    for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=None)):
        label[coco.annToMask(ann) > 0] = index[ann["category_id"]]
    return label


def make_label_maps(
    root: str | os.PathLike[str], split: str, overwrite: bool = False, progress: bool = True
) -> list[Pair]:
    """Write ``annotations/<split>2014/<image stem>.png`` for every image with annotations.

    Returns the pool (image, label) pairs, root-relative, in the JSON's image order. Files are
    written atomically; existing ones are kept unless ``overwrite``.
    """
    from pycocotools.coco import COCO

    root = check_coco_root(root, split, need_json=True)
    coco = COCO(str(root / "annotations" / f"instances_{split}2014.json"))
    out_dir = root / "annotations" / f"{split}2014"
    out_dir.mkdir(parents=True, exist_ok=True)
    image_ids = [i for i in coco.getImgIds() if coco.getAnnIds(imgIds=i, iscrowd=None)]
    if progress:
        from tqdm import tqdm

        image_ids = tqdm(image_ids, desc=f"COCO {split} label maps", unit="img")
    pool = []
    for image_id in image_ids:
        name = coco.loadImgs(image_id)[0]["file_name"]
        stem = Path(name).stem
        target = out_dir / f"{stem}.png"
        if overwrite or not target.is_file():
            atomic_save_image(target, label_map(coco, image_id))
        pool.append((f"{split}2014/{name}", f"annotations/{split}2014/{stem}.png"))
    return pool


def coco_pool(root: str | os.PathLike[str], split: str) -> list[Pair]:
    """The source pool of ``split``: the official ``val.txt`` order for val (shipped).

    For train the official ``train.txt`` is not shipped: the pool is every label map under
    ``annotations/train2014`` in file-name order (the official order is unknown; it only changes
    the order of training images, not which ones).
    """
    _check_split(split)
    if split == "val":
        return read_pairs(shipped_path("coco", "val.txt.gz"))
    root = check_coco_root(root, split)
    labels = sorted((root / "annotations" / "train2014").glob("*.png"))
    return [(f"train2014/{p.stem}.jpg", f"annotations/train2014/{p.name}") for p in labels]


def build_coco_lists(
    root: str | os.PathLike[str],
    fold: int,
    mode: str,
    official_paths: bool = False,
    progress: bool = False,
) -> FewShotLists:
    """Generate the fold's lists (interleaved split) from the label maps under ``root``.

    ``mode`` ``train`` scans the train2014 pool, ``val`` the val2014 pool; paths root-relative or
    with the official ``../data/MSCOCO2014`` prefix.
    """
    split = coco_fold(fold)
    root = check_coco_root(root, mode)
    return build_lists(
        coco_pool(root, mode),
        split.classes(mode),
        lambda path: read_label(root / path),
        train=mode == "train",
        prefix=OFFICIAL_PREFIX if official_paths else "",
        progress=progress,
    )
