"""``ImageResult``: what an image segmenter's ``predict`` returns, with its writers.

Masks are bool (H, W) at the input's original resolution; object ids are positive ints, 0 is
background. Every writer is atomic: a file appears complete or not at all.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from samkit.errors import InputError
from samkit.io.atomic import atomic_path, atomic_write_text
from samkit.io.images import ImageInput
from samkit.io.masks import labels_from_masks, masks_to_rle, write_palette_png
from samkit.io.overlay import DEFAULT_ALPHA, overlay_masks

IMAGE_SAVE_SUFFIXES = (".png", ".json", ".npz")


def check_obj_id(obj_id: Any, owner: str) -> int:
    if isinstance(obj_id, (bool, np.bool_)) or not isinstance(obj_id, (int, np.integer)) or obj_id < 1:
        raise InputError(f"{owner}: object ids must be positive ints (0 is background), got {obj_id!r}")
    return int(obj_id)


@dataclass(eq=False)
class ImageResult:
    """Masks of N objects in one image.

    ``masks`` bool (N, H, W); ``scores`` float32 (N,) (predicted IoU / confidence); ``logits``
    optional low-resolution mask logits with N leading; ``obj_ids`` the object id of each mask
    (default 1..N), used in label maps, PNGs and overlays.
    """

    masks: np.ndarray
    scores: np.ndarray
    logits: np.ndarray | None = None
    obj_ids: list[int] | None = None

    def __post_init__(self) -> None:
        masks = np.asarray(self.masks)
        if masks.ndim == 2:
            masks = masks[None]
        if masks.ndim != 3:
            raise InputError(f"ImageResult.masks must have shape (N, H, W), got {masks.shape}")
        if masks.dtype != np.bool_:
            if masks.dtype.kind not in "biu" or not np.isin(masks, (0, 1)).all():
                raise InputError(f"ImageResult.masks must be bool (or 0/1), got dtype {masks.dtype}")
            masks = masks.astype(bool)
        count = masks.shape[0]
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if scores.shape != (count,):
            raise InputError(
                f"ImageResult.scores must have shape ({count},) to match {count} masks, got {scores.shape}"
            )
        if not np.isfinite(scores).all():
            raise InputError(f"ImageResult.scores must be finite, got {scores.tolist()}")
        logits = None if self.logits is None else np.asarray(self.logits)
        if logits is not None and (logits.ndim == 0 or logits.shape[0] != count):
            raise InputError(
                f"ImageResult.logits must have {count} as leading dimension, got shape {logits.shape}"
            )
        if self.obj_ids is None:
            obj_ids = list(range(1, count + 1))
        else:
            obj_ids = [check_obj_id(obj_id, "ImageResult.obj_ids") for obj_id in self.obj_ids]
            if len(obj_ids) != count or len(set(obj_ids)) != count:
                raise InputError(
                    f"ImageResult.obj_ids must be {count} distinct ids, got {list(self.obj_ids)}"
                )
        self.masks, self.scores, self.logits, self.obj_ids = masks, scores, logits, obj_ids

    def __len__(self) -> int:
        return self.masks.shape[0]

    @property
    def height(self) -> int:
        return self.masks.shape[1]

    @property
    def width(self) -> int:
        return self.masks.shape[2]

    def masks_by_id(self) -> dict[int, np.ndarray]:
        """``{obj_id: bool (H, W)}``."""
        return dict(zip(self.obj_ids, self.masks))

    def to_label_map(self) -> np.ndarray:
        """uint8 (H, W): each pixel holds its object id, 0 = background; overlaps go to the higher score."""
        return labels_from_masks(
            self.masks_by_id(),
            (self.height, self.width),
            scores=dict(zip(self.obj_ids, self.scores.tolist())),
        )

    def to_rle(self) -> list[dict[str, Any]]:
        """One COCO RLE ``{"size": [H, W], "counts": str}`` per mask, in mask order."""
        return [masks_to_rle(mask) for mask in self.masks]

    def overlay(self, image: ImageInput, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
        """``image`` with each object's mask tinted in its palette colour (RGB uint8)."""
        return overlay_masks(image, self.masks_by_id(), alpha=alpha)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the result; the extension picks the format.

        * ``.png``: palette label map (DAVIS colours), pixel = object id.
        * ``.json``: ``{"height", "width", "annotations": [{"obj_id", "score", "segmentation": RLE}]}``.
        * ``.npz``: arrays ``masks``, ``scores``, ``obj_ids`` (and ``logits`` when present).
        """
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".png":
            return write_palette_png(path, self.to_label_map())
        if suffix == ".json":
            document = {
                "height": self.height,
                "width": self.width,
                "annotations": [
                    {"obj_id": obj_id, "score": float(score), "segmentation": rle}
                    for obj_id, score, rle in zip(self.obj_ids, self.scores, self.to_rle())
                ],
            }
            return atomic_write_text(path, json.dumps(document))
        if suffix == ".npz":
            arrays = {
                "masks": self.masks,
                "scores": self.scores,
                "obj_ids": np.asarray(self.obj_ids, dtype=np.int64),
            }
            if self.logits is not None:
                arrays["logits"] = self.logits
            with atomic_path(path) as temporary:
                np.savez_compressed(temporary, **arrays)
            return path
        raise InputError(
            f"cannot save an ImageResult as {path.name!r}: use one of {', '.join(IMAGE_SAVE_SUFFIXES)}"
        )
