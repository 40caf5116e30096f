"""Mask files and encodings: DAVIS palette PNGs, per-object binary PNGs, COCO RLE.

* Palette PNG (DAVIS / YouTube-VOS / LVOS): mode ``P`` with the standard PASCAL VOC colour map;
  the pixel value is the object id and 0 is background.
* Binary PNG (SA-V per-object layout): mode ``L``, 0 = background, 255 = object.
* COCO RLE: ``{"size": [H, W], "counts": str}`` as written by ``pycocotools`` (counts decoded to str
  so it is JSON-serialisable).

All writers are atomic (see ``samkit.io.atomic``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from samkit.errors import InputError
from samkit.io.atomic import atomic_save_image

PALETTE_SIZE = 256
MAX_LABEL = PALETTE_SIZE - 1
BINARY_FOREGROUND = 255
_LABEL_MODES = ("P", "L", "1", "I", "I;16")
_PYCOCOTOOLS_NUMPY2_WARNING = "__array__ implementation doesn't accept a copy keyword"


def _voc_colour_map(size: int = PALETTE_SIZE) -> bytes:
    """The PASCAL VOC colour map: the bits of the index are spread over R, G, B from the top bit down."""
    colours = bytearray()
    for index in range(size):
        red = green = blue = 0
        code = index
        for bit in range(8):
            red |= ((code >> 0) & 1) << (7 - bit)
            green |= ((code >> 1) & 1) << (7 - bit)
            blue |= ((code >> 2) & 1) << (7 - bit)
            code >>= 3
        colours += bytes((red, green, blue))
    return bytes(colours)


DAVIS_PALETTE: bytes = _voc_colour_map()
"""768 bytes, RGB per index: 0 = black, 1 = (128, 0, 0), 2 = (0, 128, 0), 3 = (128, 128, 0), ..."""


def palette_colour(obj_id: int) -> tuple[int, int, int]:
    """The palette colour of an object id; ids above 255 wrap around to 1..255 (never black)."""
    index = obj_id if 0 <= obj_id <= MAX_LABEL else (obj_id - 1) % MAX_LABEL + 1
    red, green, blue = DAVIS_PALETTE[3 * index : 3 * index + 3]
    return red, green, blue


def write_palette_png(path: str | os.PathLike[str], label_map: np.ndarray) -> Path:
    """Write an (H, W) integer label map (values 0..255) as a DAVIS palette PNG (mode ``P``)."""
    labels = np.asarray(label_map)
    if labels.ndim != 2 or 0 in labels.shape:
        raise InputError(f"a label map must be a non-empty 2-D (H, W) array, got shape {labels.shape}")
    if labels.dtype.kind not in "biu":
        raise InputError(f"a label map must hold integer object ids, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() > MAX_LABEL):
        raise InputError(
            f"a palette PNG stores object ids 0..{MAX_LABEL}, got values in [{labels.min()}, {labels.max()}]"
        )
    image = Image.fromarray(labels.astype(np.uint8))
    image.putpalette(DAVIS_PALETTE)
    return atomic_save_image(path, image)


def read_palette_png(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a label PNG (palette ``P`` or grayscale ``L``) as its uint8 (H, W) index values."""
    with _open_png(path) as image:
        if image.mode not in _LABEL_MODES:
            raise InputError(
                f"{path} is a mode {image.mode!r} image; a label PNG must be palette ('P') or grayscale ('L')"
            )
        values = np.array(image)
    if values.dtype == np.bool_:
        return values.astype(np.uint8)
    if values.max(initial=0) > MAX_LABEL:
        raise InputError(f"{path} holds values above {MAX_LABEL}; it is not an 8-bit label PNG")
    return values.astype(np.uint8)


def write_binary_png(path: str | os.PathLike[str], mask: np.ndarray) -> Path:
    """Write a bool (H, W) mask as a grayscale PNG with 0 = background, 255 = object."""
    mask = as_bool_mask(mask, "mask")
    image = Image.fromarray(mask.astype(np.uint8) * BINARY_FOREGROUND)
    return atomic_save_image(path, image)


def read_binary_png(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a mask PNG as bool (H, W): any non-zero value (or palette index) is foreground."""
    with _open_png(path) as image:
        if image.mode not in _LABEL_MODES:
            image = image.convert("L")
        return np.array(image) > 0


def as_bool_mask(mask: Any, name: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Check that ``mask`` is a 2-D bool (or 0/1) array, optionally of ``shape``; returns it as bool."""
    array = np.asarray(mask)
    if array.ndim != 2:
        raise InputError(f"{name} must be a 2-D (H, W) mask, got shape {array.shape}")
    if shape is not None and array.shape != tuple(shape):
        raise InputError(f"{name} has shape {array.shape}, expected {tuple(shape)}")
    if array.dtype != np.bool_:
        if array.dtype.kind not in "biuf" or not np.isin(array, (0, 1)).all():
            raise InputError(f"{name} must be bool or hold only 0/1, got dtype {array.dtype}")
        array = array.astype(bool)
    return array


def labels_from_masks(
    masks: Mapping[int, np.ndarray],
    shape: tuple[int, int],
    scores: Mapping[int, float] | None = None,
) -> np.ndarray:
    """Paint per-object bool masks into one uint8 (H, W) label map (0 = background).

    Masks are expected not to overlap. Where they do, the object with the higher score wins if
    ``scores`` (one per object) are given, ties going to the higher id; without scores the higher
    object id wins. Object ids must be in 1..255.
    """
    label_map = np.zeros(tuple(shape), dtype=np.uint8)
    for obj_id in masks:
        _check_label_id(obj_id)
    if scores is not None:
        missing = sorted(set(masks) - set(scores))
        if missing:
            raise InputError(f"scores are missing for object ids {missing}; give one score per mask or none")
        order = sorted(masks, key=lambda obj_id: (float(scores[obj_id]), obj_id))
    else:
        order = sorted(masks)
    for obj_id in order:
        label_map[as_bool_mask(masks[obj_id], f"mask of object {obj_id}", label_map.shape)] = obj_id
    return label_map


def masks_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO RLE of a bool (H, W) mask: ``{"size": [H, W], "counts": str}``."""
    from pycocotools import mask as mask_utils

    mask = as_bool_mask(mask, "mask")
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(size) for size in rle["size"]], "counts": rle["counts"].decode("ascii")}


def rle_to_mask(rle: Mapping[str, Any]) -> np.ndarray:
    """Decode a COCO RLE (compressed ``counts`` as str / bytes, or uncompressed as a list) to bool (H, W)."""
    from pycocotools import mask as mask_utils

    if not isinstance(rle, Mapping) or "size" not in rle or "counts" not in rle:
        raise InputError(f"an RLE must be a dict with 'size' and 'counts', got {type(rle).__name__}")
    height, width = (int(size) for size in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, list):
        encoded = mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    elif isinstance(counts, (str, bytes)):
        encoded = {
            "size": [height, width],
            "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
        }
    else:
        raise InputError(f"RLE 'counts' must be a str, bytes or list of ints, got {type(counts).__name__}")
    with warnings.catch_warnings():
        # pycocotools' Cython decoder predates numpy 2's ``copy`` keyword; the result is unaffected.
        warnings.filterwarnings("ignore", message=_PYCOCOTOOLS_NUMPY2_WARNING, category=DeprecationWarning)
        return mask_utils.decode(encoded).astype(bool)


def _check_label_id(obj_id: Any) -> None:
    if isinstance(obj_id, (bool, np.bool_)) or not isinstance(obj_id, (int, np.integer)):
        raise InputError(f"object ids must be ints, got {obj_id!r}")
    if not 1 <= obj_id <= MAX_LABEL:
        raise InputError(f"object id {obj_id} does not fit a label map; ids must be in 1..{MAX_LABEL}")


def _open_png(path: str | os.PathLike[str]) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"mask file not found: {path}")
    image = None
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        if image is not None:
            image.close()
        raise InputError(f"cannot read mask file {path}: {error}") from None
    return image
