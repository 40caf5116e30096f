"""Fold definitions and the few-shot list files (the official ``lists/<ds>/fss_list`` format).

A list pair for one fold and one mode is ``data_list_<k>.txt`` (one ``image label`` pair per line:
the images episodes are queried on) and ``sub_class_file_list_<k>.txt`` (the Python ``repr`` of a
dict ``class -> [(image, label), ...]``: the images supports are drawn from). The rules, as the
official ``util/dataset.py:make_dataset`` made the shipped lists:

* a class counts for an image only when it covers at least ``2 * 32 * 32`` pixels;
* train lists (base classes) skip every image holding any pixel of a class outside the fold's base
  classes (0 = background and 255 = ignore do not count);
* val lists (novel classes) keep every image with at least one counted novel class;
* both keep the source pool's order; dict keys follow the fold's class order.
"""

from __future__ import annotations

import ast
import gzip
import os
import posixpath
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from samkit.errors import InputError
from samkit.io.atomic import atomic_write_text

MIN_CLASS_PIXELS = 2 * 32 * 32  # Shaban et al.: > 2 cells of a 32x-downsampled mask
BACKGROUND = 0
IGNORE_LABEL = 255
PASCAL_NUM_CLASSES = 20
COCO_NUM_CLASSES = 80
NUM_FOLDS = 4
DATASETS = ("pascal", "coco")
MODES = ("train", "val")

Pair = tuple[str, str]  # (image path, label path)


@dataclass(frozen=True)
class FoldSplit:
    """One fold: ``novel`` classes (tested, the official ``sub_val_list``) and ``base`` (trained, ``sub_list``)."""

    dataset: str
    fold: int
    novel: tuple[int, ...]
    base: tuple[int, ...]

    def classes(self, mode: str) -> tuple[int, ...]:
        """The classes episodes of ``mode`` are drawn for: base in training, novel in validation / test."""
        _check_mode(mode)
        return self.base if mode == "train" else self.novel


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise InputError(f"mode must be one of {MODES}, got {mode!r}")


def _check_fold(fold: int) -> None:
    if fold not in range(NUM_FOLDS):
        raise InputError(f"fold must be 0, 1, 2 or 3, got {fold!r}")


def pascal_fold(fold: int) -> FoldSplit:
    """PASCAL-5i: fold k tests classes 5k+1 .. 5k+5 and trains on the other 15."""
    _check_fold(fold)
    novel = tuple(range(5 * fold + 1, 5 * fold + 6))
    base = tuple(c for c in range(1, PASCAL_NUM_CLASSES + 1) if c not in novel)
    return FoldSplit("pascal", fold, novel, base)


def coco_fold(fold: int, interleaved: bool = True) -> FoldSplit:
    """COCO-20i. ``interleaved`` (the official ``use_split_coco: True``, FWB): novel = k+1, k+5, ..., k+77.

    ``interleaved=False`` is the PANet split (novel = 20k+1 .. 20k+20), which FSSAM does not use.
    """
    _check_fold(fold)
    if interleaved:
        novel = tuple(range(fold + 1, COCO_NUM_CLASSES + 1, 4))
    else:
        novel = tuple(range(20 * fold + 1, 20 * fold + 21))
    base = tuple(c for c in range(1, COCO_NUM_CLASSES + 1) if c not in novel)
    return FoldSplit("coco", fold, novel, base)


def fold_split(dataset: str, fold: int) -> FoldSplit:
    """The official fold of ``dataset`` (``pascal`` or ``coco``)."""
    if dataset == "pascal":
        return pascal_fold(fold)
    if dataset == "coco":
        return coco_fold(fold)
    raise InputError(f"dataset must be one of {DATASETS}, got {dataset!r}")


@dataclass
class FewShotLists:
    """Query images (``items``) and, per class, the images supports come from (``class_files``)."""

    items: list[Pair]
    class_files: dict[int, list[Pair]] = field(default_factory=dict)

    def data_list_text(self) -> str:
        """The ``data_list_<k>.txt`` text, byte for byte as the official writer made it."""
        return "".join(f"{image} {label}\n" for image, label in self.items)

    def class_files_text(self) -> str:
        """The ``sub_class_file_list_<k>.txt`` text: ``str(dict)`` as the official writer made it."""
        return str(self.class_files)

    def save(self, folder: str | os.PathLike[str], fold: int) -> tuple[Path, Path]:
        """Write both files (atomically) as ``folder/data_list_<fold>.txt`` and ``sub_class_file_list_<fold>.txt``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        data = atomic_write_text(folder / f"data_list_{fold}.txt", self.data_list_text())
        classes = atomic_write_text(folder / f"sub_class_file_list_{fold}.txt", self.class_files_text())
        return data, classes

    def relocated(self, old_prefix: str, new_prefix: str) -> FewShotLists:
        """Same lists with ``old_prefix`` replaced by ``new_prefix`` at the start of every path."""

        def move(path: str) -> str:
            if not path.startswith(old_prefix):
                raise InputError(f"list path {path!r} does not start with {old_prefix!r}")
            rest = path[len(old_prefix) :].lstrip("/")
            return posixpath.join(new_prefix, rest) if new_prefix else rest

        def pair(p: Pair) -> Pair:
            return (move(p[0]), move(p[1]))

        return FewShotLists(
            [pair(p) for p in self.items],
            {c: [pair(p) for p in files] for c, files in self.class_files.items()},
        )


def _open_text(path: Path) -> str:
    if path.suffix == ".gz":
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            return handle.read()
    return path.read_text(encoding="utf-8")


def parse_pairs(text: str, where: str = "list") -> list[Pair]:
    """``image label`` lines -> pairs (blank lines skipped)."""
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise InputError(f"{where} line {number}: expected 'IMAGE LABEL', got {line!r}")
        pairs.append((parts[0], parts[1]))
    return pairs


def read_pairs(path: str | os.PathLike[str]) -> list[Pair]:
    """Read an ``image label`` list file (``.gz`` allowed)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"list file {path} does not exist")
    return parse_pairs(_open_text(path), str(path))


def read_lists(folder: str | os.PathLike[str], fold: int) -> FewShotLists:
    """Read ``data_list_<fold>.txt`` and ``sub_class_file_list_<fold>.txt`` (or their ``.gz``) from ``folder``.

    The class dict is parsed as a Python literal (never evaluated as code).
    """
    folder = Path(folder)
    found = []
    for stem in (f"data_list_{fold}.txt", f"sub_class_file_list_{fold}.txt"):
        candidates = [folder / stem, folder / f"{stem}.gz"]
        existing = [c for c in candidates if c.is_file()]
        if not existing:
            raise InputError(f"list file {candidates[0]} does not exist")
        found.append(existing[0])
    items = read_pairs(found[0])
    try:
        raw = ast.literal_eval(_open_text(found[1]))
    except (ValueError, SyntaxError) as error:
        raise InputError(
            f"{found[1]} is not a dict literal of class -> [(image, label), ...]: {error}"
        ) from None
    if not isinstance(raw, dict):
        raise InputError(f"{found[1]} must hold a dict of class -> [(image, label), ...]")
    class_files = {int(c): [(str(a), str(b)) for a, b in files] for c, files in raw.items()}
    return FewShotLists(items, class_files)


def shipped_path(dataset: str, name: str) -> Path:
    """A list file shipped with samkit under ``samkit/fewshot/data/lists/<dataset>/`` (see its README)."""
    path = Path(str(resources.files("samkit.fewshot.data").joinpath("lists", dataset, name)))
    if not path.is_file():
        raise InputError(f"samkit ships no list {dataset}/{name}")
    return path


def read_label(path: str | os.PathLike[str]) -> np.ndarray:
    """A label PNG as uint8 HxW class indices (8-bit grayscale or palette index values)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"label file {path} does not exist")
    with Image.open(path) as image:
        if image.mode not in ("L", "P", "I", "I;16"):
            raise InputError(f"label {path} has mode {image.mode}: expected a single-channel class-index PNG")
        label = np.array(image)
    if label.max(initial=0) > IGNORE_LABEL:
        raise InputError(f"label {path} holds values above {IGNORE_LABEL}")
    return label.astype(np.uint8)


def present_classes(label: np.ndarray) -> list[int]:
    """Classes present with any pixel count (0 and 255 excluded), ascending, as ``np.unique`` gives them."""
    return [int(c) for c in np.unique(label) if c not in (BACKGROUND, IGNORE_LABEL)]


def counted_classes(label: np.ndarray, classes: Iterable[int], train: bool) -> list[int]:
    """The classes of ``classes`` an image counts for under the official list rules (see module docs)."""
    allowed = set(classes)
    present = present_classes(label)
    if train and not set(present).issubset(allowed):
        return []
    counts = np.bincount(label.ravel(), minlength=IGNORE_LABEL + 1)
    return [c for c in present if c in allowed and counts[c] >= MIN_CLASS_PIXELS]


def build_lists(
    pool: Sequence[Pair],
    classes: Sequence[int],
    load_label: Callable[[str], np.ndarray],
    train: bool,
    prefix: str = "",
    progress: bool = False,
) -> FewShotLists:
    """Apply the official list rules to ``pool`` (paths relative to the data root).

    ``load_label`` reads a pool label path; ``prefix`` is joined in front of every written path
    (the official lists use ``../data/VOCdevkit2012/VOC2012`` and ``../data/MSCOCO2014``).
    """
    items: list[Pair] = []
    class_files: dict[int, list[Pair]] = {c: [] for c in classes}
    iterator: Iterable[Pair] = pool
    if progress:
        from tqdm import tqdm

        iterator = tqdm(pool, desc="scanning labels", unit="img")
    for image, label_path in iterator:
        kept = counted_classes(load_label(label_path), classes, train)
        if not kept:
            continue
        entry = (
            (posixpath.join(prefix, image), posixpath.join(prefix, label_path))
            if prefix
            else (image, label_path)
        )
        items.append(entry)
        for c in kept:
            class_files[c].append(entry)
    return FewShotLists(items, class_files)
