"""Image input: every image samkit takes becomes an RGB uint8 (H, W, 3) numpy array here.

EXIF orientation is not applied, matching ``sam2`` / ``segment-anything`` and the datasets'
own loaders, so masks line up with the stored pixel grid.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from samkit.errors import InputError

ImageInput = str | os.PathLike | Image.Image | np.ndarray

RGB_CHANNELS = 3
RGBA_CHANNELS = 4


def load_image(source: ImageInput) -> np.ndarray:
    """Return ``source`` (a path, a PIL image or a numpy array) as an RGB uint8 (H, W, 3) array.

    Files and PIL images in any mode (grayscale, palette, RGBA...) are converted to RGB. Numpy arrays
    must already be uint8 (H, W, 3), or (H, W, 4) RGBA whose alpha is dropped: a 2-D or non-uint8
    array is ambiguous (which channel order? which value range?) and raises ``InputError``.
    """
    if isinstance(source, (str, os.PathLike)):
        return read_image_file(source)
    if isinstance(source, Image.Image):
        return _pil_to_rgb(source)
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source)
    raise InputError(
        f"an image must be a file path, a PIL image or a numpy uint8 (H, W, 3) array, got {type(source).__name__}"
    )


def read_image_file(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file to RGB uint8 (H, W, 3); a missing or unreadable file is an ``InputError``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:
            return _pil_to_rgb(image)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise InputError(f"cannot read image file {path}: {error}") from None


def read_image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(height, width)`` of an image file from its header only, without decoding the pixels."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            width, height = image.size
    except FileNotFoundError:
        raise InputError(f"image file not found: {path}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise InputError(f"cannot read image file {path}: {error}") from None
    return height, width


def _pil_to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.array(image, dtype=np.uint8)


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    if array.ndim != 3 or array.shape[2] not in (RGB_CHANNELS, RGBA_CHANNELS):
        raise InputError(
            f"a numpy image must have shape (H, W, 3) RGB (or (H, W, 4) RGBA), got {array.shape}; "
            "convert grayscale images with np.repeat(gray[..., None], 3, axis=2)"
        )
    if array.dtype != np.uint8:
        raise InputError(
            f"a numpy image must be uint8 in [0, 255], got dtype {array.dtype}; "
            "convert with (image * 255).round().astype(np.uint8) if it holds floats in [0, 1]"
        )
    if 0 in array.shape[:2]:
        raise InputError(f"a numpy image must not be empty, got shape {array.shape}")
    return np.ascontiguousarray(array[..., :RGB_CHANNELS])
