"""A generated referring task, and a writer of any samples into the standard dataset layouts.

Each image holds three coloured shapes (circle / square / triangle in red / green / blue / yellow), one
per horizontal third; two of them often share a shape. Each sample refers to one of them with
expressions that pick exactly that object -- "the red circle", "the green one", "the triangle",
"the square on the left" -- so a text-blind model cannot tell which object is meant. With
``no_target_ratio > 0`` some expressions name an absent object (empty mask, ``no_target=True``).
Everything is deterministic in (seed, index).
"""

from __future__ import annotations

import io
import json
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from samkit.errors import InputError
from samkit.io.atomic import atomic_write_bytes, atomic_write_text
from samkit.referring.data.dataset import ReferringSample
from samkit.referring.data.refer import NO_TARGET_ANN, SPLIT_BY, ZERO_SOURCE

COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (50, 80, 220), "yellow": (230, 210, 40)}
SHAPES = ("circle", "square", "triangle")
SLOTS = ("left", "middle", "right")
REFS_PICKLE_PROTOCOL = 2  # the original refer files are Python 2 pickles
MIN_SIZE = 24


def shape_mask(shape: str, cy: float, cx: float, radius: float, size: int) -> np.ndarray:
    """(size, size) bool mask of one shape centred at (cy, cx)."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    dy, dx = ys - cy, xs - cx
    if shape == "circle":
        return dy**2 + dx**2 <= radius**2
    if shape == "square":
        return (np.abs(dy) <= radius) & (np.abs(dx) <= radius)
    return (dy >= -radius) & (dy <= radius) & (np.abs(dx) <= (dy + radius) / 2)  # apex up


def _expressions(objects: list[tuple[str, str]], target: int) -> list[str]:
    """Every template that picks ``objects[target]`` (objects are listed left to right)."""
    colour, shape = objects[target]
    found = [f"the {colour} {shape}"]
    if sum(c == colour for c, _ in objects) == 1:
        found.append(f"the {colour} one")
    same_shape = [i for i, (_, s) in enumerate(objects) if s == shape]
    if len(same_shape) == 1:
        found.append(f"the {shape}")
    elif target == same_shape[0]:
        found.append(f"the {shape} on the left")
    elif target == same_shape[-1]:
        found.append(f"the {shape} on the right")
    return found


def synthetic_sample(
    index: int, size: int = 64, seed: int = 0, no_target_ratio: float = 0.0
) -> ReferringSample:
    """The ``index``-th generated sample (see the module docstring)."""
    if size < MIN_SIZE:
        raise InputError(f"synthetic images must be at least {MIN_SIZE} px, got {size}")
    rng = np.random.default_rng((seed, index))
    colours = list(rng.permutation(list(COLOURS)))[:3]
    if rng.random() < 0.5:  # two objects share a shape: "the <shape> on the left / right" is needed
        shared, other = rng.permutation(SHAPES)[:2]
        shapes = list(rng.permutation([shared, shared, other]))
    else:
        shapes = list(rng.permutation(SHAPES))
    objects = list(zip(colours, shapes))
    radius = size / 9
    image = np.clip(rng.normal(90, 12, size=(size, size, 3)), 0, 255).astype(np.uint8)
    masks = []
    for slot, (colour, shape) in enumerate(objects):
        cx = size * (2 * slot + 1) / 6
        cy = rng.uniform(radius + 1, size - radius - 1)
        mask = shape_mask(shape, cy, cx, radius, size)
        image[mask] = COLOURS[colour]
        masks.append(mask)
    if rng.random() < no_target_ratio:
        present = set(objects)
        absent = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in present]
        colour, shape = absent[int(rng.integers(len(absent)))]
        return ReferringSample(
            image=image,
            mask=np.zeros((size, size), np.uint8),
            sentences=[f"the {colour} {shape}"],
            ref_id=index,
            no_target=True,
            image_id=index,
        )
    target = int(rng.integers(len(objects)))
    sentences = _expressions(objects, target)
    return ReferringSample(
        image=image,
        mask=masks[target].astype(np.uint8),
        sentences=sentences,
        ref_id=index,
        image_id=index,
        extra={"colour": objects[target][0], "shape": objects[target][1], "slot": SLOTS[target]},
    )


class SyntheticReferringDataset:
    """``num_samples`` generated samples as a map-style dataset (same interface as ReferringDataset)."""

    def __init__(
        self, num_samples: int, size: int = 64, seed: int = 0, no_target_ratio: float = 0.0, transform=None
    ) -> None:
        self.num_samples, self.size, self.seed = num_samples, size, seed
        self.no_target_ratio = no_target_ratio
        self.transform = transform

    def __len__(self) -> int:
        return self.num_samples

    def sample(self, index: int) -> ReferringSample:
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} items")
        return synthetic_sample(index, self.size, self.seed, self.no_target_ratio)

    def __getitem__(self, index: int):
        sample = self.sample(index)
        return self.transform(sample) if self.transform is not None else sample


def _rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def write_refer_layout(
    root: str | Path,
    samples: Sequence[ReferringSample],
    splits: Sequence[str],
    dataset: str = "refcoco",
    split_by: str | None = None,
) -> Path:
    """Write samples as ``root/<dataset>/refs(<split_by>).p`` (gRefCOCO: ``grefs(unc).json``) +
    ``instances.json`` (RLE masks) and PNG images under ``root/images/train2014``. Returns root."""
    if dataset not in SPLIT_BY:
        raise InputError(f"unknown referring dataset {dataset!r}; expected one of {sorted(SPLIT_BY)}")
    if len(splits) != len(samples):
        raise InputError(f"need one split per sample, got {len(splits)} for {len(samples)} samples")
    from PIL import Image

    root, split_by = Path(root), split_by or SPLIT_BY[dataset][0]
    images, annotations, refs = [], [], []
    for number, (sample, split) in enumerate(zip(samples, splits)):
        image_id = number + 1
        height, width = sample.mask.shape
        file_name = f"COCO_train2014_{image_id:012d}.png"
        buffer = io.BytesIO()
        Image.fromarray(sample.image).save(buffer, format="PNG")
        atomic_write_bytes(root / "images" / "train2014" / file_name, buffer.getvalue())
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
        ref = {"ref_id": sample.ref_id, "image_id": image_id, "split": split, "category_id": 1}
        if sample.no_target:
            ref["ann_id"] = [NO_TARGET_ANN] if dataset == "grefcoco" else image_id
            annotations.append(
                {
                    "id": image_id,
                    "image_id": image_id,
                    "category_id": 1,
                    "iscrowd": 0,
                    "segmentation": _rle(np.zeros_like(sample.mask)),
                }
            )
        else:
            annotations.append(
                {
                    "id": image_id,
                    "image_id": image_id,
                    "category_id": 1,
                    "iscrowd": 0,
                    "segmentation": _rle(sample.mask),
                }
            )
            ref["ann_id"] = [image_id] if dataset == "grefcoco" else image_id
        if dataset == "ref-zom":
            ref["source"] = ZERO_SOURCE if sample.no_target else "one"
        ref["sentences"] = [
            {"raw": s, "sent": s.lower(), "tokens": s.lower().split(), "sent_id": sample.ref_id * 100 + k}
            for k, s in enumerate(sample.sentences)
        ]
        refs.append(ref)
    data_dir = root / dataset
    categories = [{"id": 1, "name": "shape", "supercategory": "shape"}]
    atomic_write_text(
        data_dir / "instances.json",
        json.dumps({"images": images, "annotations": annotations, "categories": categories}),
    )
    if dataset == "grefcoco":
        atomic_write_text(data_dir / f"grefs({split_by}).json", json.dumps(refs))
    else:
        atomic_write_bytes(
            data_dir / f"refs({split_by}).p", pickle.dumps(refs, protocol=REFS_PICKLE_PROTOCOL)
        )
    return root
