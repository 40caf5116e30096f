"""Typed prompts: what a user tells a segmenter about the object(s) to segment.

Every prompt is a frozen dataclass validated on construction, so a bad prompt fails where it is
written, with a message naming the field, rather than deep inside a model.
Coordinates are absolute pixels of the original image / video frame; boxes are XYXY.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from samkit.constants import VOID_LABEL
from samkit.errors import InputError

POSITIVE = 1
NEGATIVE = 0


def _finite_float_array(value: Any, name: str) -> np.ndarray:
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise InputError(f"{name} must be numeric, got {type(value).__name__}: {error}") from None
    if raw.dtype.kind not in "iuf":
        raise InputError(f"{name} must hold int or float numbers, got dtype {raw.dtype}")
    array = raw.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise InputError(f"{name} must hold finite numbers, got {array.tolist()}")
    return array


def _frame_index(frame: Any, name: str) -> int:
    if isinstance(frame, (bool, np.bool_)) or not isinstance(frame, (int, np.integer)):
        raise InputError(f"{name}.frame must be an int frame index, got {frame!r}")
    if frame < 0:
        raise InputError(f"{name}.frame must be >= 0, got {frame}")
    return int(frame)


def _freeze(array: np.ndarray) -> np.ndarray:
    array = np.array(array, copy=True)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class Points:
    """Clicks on one object: ``xy`` (K, 2) pixels, ``labels`` (K,) with 1 = object, 0 = background."""

    xy: np.ndarray
    labels: np.ndarray | None = None
    frame: int = 0

    def __post_init__(self) -> None:
        xy = _finite_float_array(self.xy, "Points.xy")
        if xy.ndim == 1 and xy.shape == (2,):
            xy = xy[None]
        if xy.ndim != 2 or xy.shape[1] != 2 or xy.shape[0] == 0:
            raise InputError(f"Points.xy must have shape (K, 2) with K >= 1, got {xy.shape}")
        if self.labels is None:
            labels = np.full((xy.shape[0],), POSITIVE, dtype=np.int32)
        else:
            labels = np.asarray(self.labels)
            if labels.ndim == 0:
                labels = labels[None]
            if labels.shape != (xy.shape[0],):
                raise InputError(
                    f"Points.labels must have shape ({xy.shape[0]},) to match Points.xy, got {labels.shape}"
                )
            if labels.dtype.kind not in "biuf" or not np.isin(labels, (NEGATIVE, POSITIVE)).all():
                raise InputError(f"Points.labels must be 1 (object) or 0 (background), got {labels.tolist()}")
            labels = labels.astype(np.int32)
        if np.any(xy < 0):
            raise InputError(f"Points.xy must be non-negative pixel coordinates, got {xy.tolist()}")
        object.__setattr__(self, "xy", _freeze(xy))
        object.__setattr__(self, "labels", _freeze(labels))
        object.__setattr__(self, "frame", _frame_index(self.frame, "Points"))


@dataclass(frozen=True, eq=False)
class Box:
    """One object's bounding box ``xyxy`` in pixels (x0 <= x1, y0 <= y1)."""

    xyxy: np.ndarray
    frame: int = 0

    def __post_init__(self) -> None:
        xyxy = _finite_float_array(self.xyxy, "Box.xyxy").reshape(-1)
        if xyxy.shape != (4,):
            raise InputError(f"Box.xyxy must be 4 numbers (x0, y0, x1, y1), got shape {xyxy.shape}")
        x0, y0, x1, y1 = xyxy.tolist()
        if x1 < x0 or y1 < y0:
            raise InputError(f"Box.xyxy must satisfy x0 <= x1 and y0 <= y1, got {xyxy.tolist()}")
        if min(x0, y0) < 0:
            raise InputError(f"Box.xyxy must be non-negative pixel coordinates, got {xyxy.tolist()}")
        object.__setattr__(self, "xyxy", _freeze(xyxy))
        object.__setattr__(self, "frame", _frame_index(self.frame, "Box"))


@dataclass(frozen=True, eq=False)
class Mask:
    """One object's mask: bool (H, W) at the image / video resolution, non-empty."""

    mask: np.ndarray
    frame: int = 0

    def __post_init__(self) -> None:
        mask = np.asarray(self.mask)
        if mask.ndim != 2 or 0 in mask.shape:
            raise InputError(f"Mask.mask must be a 2-D (H, W) array, got shape {mask.shape}")
        if mask.dtype != np.bool_:
            if mask.dtype.kind not in "biuf" or not np.isin(mask, (0, 1)).all():
                raise InputError(
                    f"Mask.mask must be bool or hold only 0/1, got dtype {mask.dtype} "
                    f"with values {np.unique(mask)[:8].tolist()}"
                )
            mask = mask.astype(bool)
        if not mask.any():
            raise InputError("Mask.mask is empty (no foreground pixel); give a mask that covers the object")
        object.__setattr__(self, "mask", _freeze(mask))
        object.__setattr__(self, "frame", _frame_index(self.frame, "Mask"))


@dataclass(frozen=True)
class Text:
    """A referring expression, e.g. ``Text("the man in red on the left")``."""

    text: str

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise InputError(f"Text.text must be a str, got {type(self.text).__name__}")
        if not self.text.strip():
            raise InputError("Text.text is empty; give a referring expression such as 'the dog on the left'")


@dataclass(frozen=True, eq=False)
class SupportSet:
    """K annotated support images for few-shot segmentation: RGB uint8 (H, W, 3) and bool (H, W) masks."""

    images: Sequence[np.ndarray]
    masks: Sequence[np.ndarray]

    def __post_init__(self) -> None:
        from samkit.io.images import load_image

        images, masks = self.images, self.masks
        if isinstance(images, (str, os.PathLike, Image.Image)) or (
            isinstance(images, np.ndarray) and images.ndim == 3
        ):
            images = [images]
        if isinstance(masks, Image.Image) or (isinstance(masks, np.ndarray) and masks.ndim == 2):
            masks = [masks]
        try:
            images, masks = list(images), list(masks)
        except TypeError:
            raise InputError(
                "SupportSet.images and .masks must be lists (one image and one mask per support shot), "
                f"got {type(self.images).__name__} and {type(self.masks).__name__}"
            ) from None
        if not images:
            raise InputError("SupportSet needs at least one image (K >= 1)")
        if len(images) != len(masks):
            raise InputError(
                f"SupportSet has {len(images)} images but {len(masks)} masks; give one mask per image"
            )
        frozen_images, frozen_masks = [], []
        for index, (image, mask) in enumerate(zip(images, masks)):
            try:
                image = load_image(image)
            except InputError as error:
                raise InputError(f"SupportSet image {index}: {error}") from None
            mask = np.asarray(mask)
            if mask.shape != image.shape[:2]:
                raise InputError(
                    f"SupportSet mask {index} has shape {mask.shape}, expected {image.shape[:2]} to match its image"
                )
            if mask.dtype != np.bool_ and (
                mask.dtype.kind not in "biu" or not np.isin(mask, (0, 1, VOID_LABEL)).all()
            ):
                raise InputError(
                    f"SupportSet mask {index} must be bool or 0/1 (255 = ignore), got dtype {mask.dtype} "
                    f"with values {np.unique(mask)[:8].tolist()}"
                )
            if not (mask == 1).any():
                hint = (
                    " (255 marks ignored pixels; foreground must be 1 or True)"
                    if (mask == VOID_LABEL).any()
                    else ""
                )
                raise InputError(
                    f"SupportSet mask {index} is empty{hint}; every support mask must show the class"
                )
            frozen_images.append(_freeze(image))
            frozen_masks.append(_freeze(mask if mask.dtype == np.bool_ else mask.astype(np.uint8)))
        object.__setattr__(self, "images", tuple(frozen_images))
        object.__setattr__(self, "masks", tuple(frozen_masks))

    def __len__(self) -> int:
        return len(self.images)


VisualPrompt = Points | Box | Mask


def check_obj_id(obj_id: Any) -> int:
    """``obj_id`` as an int; anything but a positive int (0 is background) is an InputError."""
    if isinstance(obj_id, (bool, np.bool_)) or not isinstance(obj_id, (int, np.integer)) or obj_id < 1:
        raise InputError(f"object ids must be positive ints (0 is background), got {obj_id!r}")
    return int(obj_id)


def normalize_prompts(
    prompt: Any,
    prompts: Mapping[Any, Any] | None,
    allowed: tuple[type, ...],
    *,
    head: str,
) -> dict[int, list[Any]]:
    """The prompts of one ``predict`` call as ``{obj_id: [prompt, ...]}``, in the order given.

    ``prompt=`` (one prompt or a list of them) is object 1; ``prompts={obj_id: prompt | [prompts]}``
    names the objects. Ids must be positive ints, every object needs at least one prompt, and every
    prompt must be one of the ``allowed`` types of ``head``. Neither given: an empty dict (the head
    decides whether it can run unprompted).
    """
    names = ", ".join(kind.__name__ for kind in allowed)
    if prompt is not None and prompts is not None:
        raise InputError(f"{head}: give either prompt= (one object) or prompts={{obj_id: prompt}} (several), not both")
    if isinstance(prompt, Mapping):
        raise InputError(f"{head}: a dict of per-object prompts goes in prompts=, e.g. predict(x, prompts={{1: ...}})")
    if prompts is None:
        return {} if prompt is None else {1: _prompt_list(prompt, 1, allowed, names, head)}
    if not isinstance(prompts, Mapping):
        raise InputError(f"{head}: prompts must be a dict {{obj_id: prompt}}, got {type(prompts).__name__}")
    if not prompts:
        raise InputError(f"{head}: prompts is an empty dict; give at least one prompt: {{obj_id: {names}}}")
    normalized: dict[int, list[Any]] = {}
    for obj_id, value in prompts.items():
        key = check_obj_id(obj_id)
        normalized[key] = _prompt_list(value, key, allowed, names, head)
    return normalized


def _prompt_list(value: Any, obj_id: int, allowed: tuple[type, ...], names: str, head: str) -> list[Any]:
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if not items or value is None:
        raise InputError(f"{head}: object {obj_id} has an empty prompt; give {names} (or a list of them)")
    wrong = [type(item).__name__ for item in items if not isinstance(item, allowed)]
    if wrong:
        raise InputError(f"{head}: object {obj_id}: prompts must be {names}, got {', '.join(wrong)}")
    return items
