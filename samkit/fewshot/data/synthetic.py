"""A generated few-shot dataset: textured shapes, one shape + texture per class, deterministic by seed.

It is written in the same form as the real datasets (RGB PNG images, 8-bit label PNGs with 0 =
background, class ids 1..C and a 255 ignore band around every object) so the same list rules,
episode sampler, transforms and metrics apply. Folds split the classes into contiguous groups:
fold k's novel classes never appear as base classes in training (the list rules drop any training
image that holds a pixel of them), so a model trained on fold k meets its novel classes only at test.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from samkit.errors import InputError
from samkit.fewshot.data.lists import FewShotLists, FoldSplit, Pair, build_lists, read_label
from samkit.io.atomic import atomic_save_image

SHAPES = ("disc", "square", "triangle", "ring", "cross", "diamond", "bar", "ellipse")
IGNORE_BAND = 1  # pixels of ignore (255) drawn around each object, as VOC labels have
SECOND_OBJECT_P = 0.4  # chance an image also holds a smaller object of another class
MAX_CLASSES = 254
MIN_SIZE = 128  # main objects then cover > 2 * 32 * 32 pixels, the official list threshold


def _shape_mask(shape: str, size: int, cy: float, cx: float, radius: float, angle: float) -> np.ndarray:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    dy, dx = ys - cy, xs - cx
    c, s = math.cos(angle), math.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy  # rotated coordinates
    if shape == "disc":
        return dx**2 + dy**2 <= radius**2
    if shape == "square":
        return (np.abs(u) <= radius * 0.85) & (np.abs(v) <= radius * 0.85)
    if shape == "triangle":
        return (v <= radius * 0.8) & (v >= 1.5 * np.abs(u) - radius)
    if shape == "ring":
        d2 = dx**2 + dy**2
        return (d2 <= radius**2) & (d2 >= (0.55 * radius) ** 2)
    if shape == "cross":
        arm = radius * 0.35
        return ((np.abs(u) <= arm) & (np.abs(v) <= radius)) | ((np.abs(v) <= arm) & (np.abs(u) <= radius))
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= radius * 1.2
    if shape == "bar":
        return (np.abs(u) <= radius * 1.1) & (np.abs(v) <= radius * 0.45)
    return (u / (radius * 1.1)) ** 2 + (v / (radius * 0.65)) ** 2 <= 1.0  # ellipse


def _class_texture(class_id: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A class-specific striped colour texture (HxWx3 float 0-255) with per-image noise."""
    hue = (class_id * 0.618034) % 1.0
    base = np.array([0.5 + 0.5 * math.cos(2 * math.pi * (hue + k / 3)) for k in range(3)], dtype=np.float32)
    frequency = 0.25 + 0.12 * (class_id % 4)
    angle = math.pi * (class_id % 5) / 5
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    stripes = 0.5 + 0.5 * np.sin(frequency * (math.cos(angle) * xs + math.sin(angle) * ys))
    texture = base[None, None] * (0.55 + 0.45 * stripes[..., None])
    return np.clip(255 * texture + rng.normal(0, 8, (size, size, 3)), 0, 255).astype(np.float32)


def render(classes: list[int], size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One image (uint8 HxWx3) and label (uint8 HxW) holding one object per entry of ``classes``."""
    image = np.clip(rng.normal(110, 25, (1, 1, 3)) + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(
        np.float32
    )
    label = np.zeros((size, size), dtype=np.uint8)
    for order, class_id in enumerate(classes):
        radius = size * (rng.uniform(0.3, 0.38) if order == 0 else rng.uniform(0.12, 0.18))
        cy, cx = rng.uniform(radius, size - radius, 2)
        mask = _shape_mask(
            SHAPES[(class_id - 1) % len(SHAPES)], size, cy, cx, radius, rng.uniform(0, math.pi)
        )
        grown = mask.copy()
        for axis in (0, 1):  # a thin band around the object becomes ignore, as in VOC labels
            for shift in range(1, IGNORE_BAND + 1):
                grown |= np.roll(mask, shift, axis) | np.roll(mask, -shift, axis)
        label[grown & ~mask] = 255
        label[mask] = class_id
        image[mask] = _class_texture(class_id, size, rng)[mask]
    return image.astype(np.uint8), label


@dataclass
class SyntheticFewShot:
    """A generated dataset on disk: ``root``, its class count, folds and the two source pools."""

    root: Path
    num_classes: int
    num_folds: int
    pools: dict[str, list[Pair]] = field(default_factory=dict)

    def fold(self, fold: int) -> FoldSplit:
        """Fold ``fold``: a contiguous group of ``num_classes / num_folds`` novel classes."""
        if fold not in range(self.num_folds):
            raise InputError(f"fold must be in [0, {self.num_folds}), got {fold}")
        per = self.num_classes // self.num_folds
        novel = tuple(range(fold * per + 1, fold * per + per + 1))
        base = tuple(c for c in range(1, self.num_classes + 1) if c not in novel)
        return FoldSplit("synthetic", fold, novel, base)

    def lists(self, fold: int, mode: str) -> FewShotLists:
        """The fold's lists under the official rules (``train`` pool for base, ``val`` pool for novel)."""
        split = self.fold(fold)
        return build_lists(
            self.pools[mode], split.classes(mode), lambda p: read_label(self.root / p), train=mode == "train"
        )


def make_synthetic(
    root: str | os.PathLike[str],
    num_classes: int = 8,
    num_folds: int = 4,
    images_per_class: int = 6,
    size: int = 128,
    seed: int = 0,
) -> SyntheticFewShot:
    """Write ``images_per_class`` train and val images per class under ``root/images`` and ``root/labels``.

    Each image holds one large object of its class (over 2 * 32 * 32 pixels unless occluded) and,
    sometimes, a smaller object of another class; the same arguments always write the same files.
    """
    if not 2 <= num_classes <= MAX_CLASSES or num_folds < 1 or num_classes % num_folds:
        raise InputError(
            f"need 2..{MAX_CLASSES} classes divisible by num_folds, got {num_classes} / {num_folds}"
        )
    if images_per_class < 2 or size < MIN_SIZE:
        raise InputError(
            f"need images_per_class >= 2 and size >= {MIN_SIZE}, got {images_per_class} and {size}"
        )
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    data = SyntheticFewShot(root, num_classes, num_folds)
    for mode in ("train", "val"):
        pool = []
        for index in range(images_per_class * num_classes):
            classes = [index % num_classes + 1]
            if rng.random() < SECOND_OBJECT_P:
                classes.append(int(rng.choice([c for c in range(1, num_classes + 1) if c != classes[0]])))
            image, label = render(classes, size, rng)
            name = f"{mode}_{index:05d}"
            atomic_save_image(root / "images" / f"{name}.png", image)
            atomic_save_image(root / "labels" / f"{name}.png", label)
            pool.append((f"images/{name}.png", f"labels/{name}.png"))
        data.pools[mode] = pool
    return data
