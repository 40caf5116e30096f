"""Referring samples and datasets: (image, mask, sentences, ref id) from the standard files."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from samkit.errors import InputError
from samkit.referring.data.refer import ReferIndex


@dataclass
class ReferringSample:
    """One referent: RGB image (H, W, 3) uint8, its mask (H, W) uint8 {0, 1} at the image's resolution,
    its expressions, and whether it refers to nothing (gRefCOCO / Ref-ZOM no-target)."""

    image: np.ndarray
    mask: np.ndarray
    sentences: list[str]
    ref_id: int
    no_target: bool = False
    image_id: int = -1
    extra: dict[str, Any] = field(default_factory=dict)


def read_rgb(path: Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB; a missing or unreadable file -> InputError."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (FileNotFoundError, UnidentifiedImageError, OSError) as error:
        raise InputError(f"cannot read image {path}: {error}") from error


class ReferringDataset:
    """RefCOCO / RefCOCO+ / RefCOCOg / gRefCOCO / Ref-ZOM split as a map-style dataset.

    ``per_sentence=False`` (training): one item per referent with all its sentences (the train
    transform picks one per epoch, as CARIS). ``per_sentence=True`` (evaluation): one item per
    expression. ``transform`` maps a :class:`ReferringSample` to the model's input.
    """

    def __init__(
        self,
        root: str | Path,
        dataset: str = "refcoco",
        split: str = "val",
        split_by: str | None = None,
        image_dir: str | Path | None = None,
        per_sentence: bool = False,
        transform: Callable[[ReferringSample], Any] | None = None,
        official_compat: bool = False,
    ) -> None:
        self.index = ReferIndex(root, dataset, split_by, image_dir)
        self.refs = self.index.refs(split)
        self.split = split
        self.transform = transform
        self.official_compat = official_compat
        if per_sentence:
            self._items = [(i, s) for i, ref in enumerate(self.refs) for s in range(len(ref.sentences))]
        else:
            self._items = [(i, None) for i in range(len(self.refs))]

    def __len__(self) -> int:
        return len(self._items)

    def sample(self, index: int) -> ReferringSample:
        """The untransformed sample at ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        ref_index, sentence = self._items[index]
        entry = self.refs[ref_index]
        image = read_rgb(self.index.image_path(entry))
        if image.shape[:2] != (entry.height, entry.width):
            raise InputError(
                f"image {self.index.image_path(entry)} is {image.shape[1]}x{image.shape[0]} but its annotation "
                f"says {entry.width}x{entry.height}"
            )
        sentences = list(entry.sentences) if sentence is None else [entry.sentences[sentence]]
        return ReferringSample(
            image=image,
            mask=self.index.mask(entry, self.official_compat),
            sentences=sentences,
            ref_id=entry.ref_id,
            no_target=entry.no_target,
            image_id=entry.image_id,
        )

    def __getitem__(self, index: int) -> Any:
        sample = self.sample(index)
        return self.transform(sample) if self.transform is not None else sample
