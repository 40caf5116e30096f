"""The official FSSAM augmentations, written with numpy (no OpenCV).

Each transform maps ``(image, label, rng) -> (image, label)`` with ``image`` float32 HxWx3 (RGB,
0-255) and ``label`` uint8 HxW (0 = background, 1 = target, 255 = ignore). Random draws come from
the ``random.Random`` passed in, in the same order and with the same calls as the official
transforms make on Python's global ``random``, so one RNG state gives the same parameters.

Resampling follows OpenCV's definitions (what the official code calls): ``INTER_LINEAR`` is
half-pixel bilinear without antialiasing, ``INTER_NEAREST`` takes ``floor(dst * scale)``;
``cv2.resize(fx=s)`` sizes the output ``round(n * s)`` and maps with ``1 / s``; the 5x5 Gaussian
blur with sigma 0 is the binomial kernel [1, 4, 6, 4, 1] / 16 with reflect-101 borders;
``cv2.warpAffine`` works in fixed point (source coordinates on a 1/32-pixel grid). The tests compare
every transform with OpenCV 4.10 (the official environment's version).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

IGNORE_LABEL = 255
IMAGENET_MEAN_255 = (0.485 * 255, 0.456 * 255, 0.406 * 255)  # official padding value for images
PASCAL_SCALE = (0.9, 1.1)
COCO_SCALE = (0.8, 1.25)
ROTATE_DEGREES = (-10.0, 10.0)
ROTATE_P = 0.5
BLUR_P = 0.5
FLIP_P = 0.5
CROP_SIZE = 512
CROP_KEEP_FOREGROUND = 0.85  # a random crop is redrawn while it keeps less of the target than this
CROP_RETRIES = 30  # the official loop runs while ``count <= 30``: up to 31 redraws
AFFINE_BITS = 10  # cv2.warpAffine maps coordinates in 1/1024-pixel fixed point ...
AFFINE_SCALE = 1 << AFFINE_BITS
INTER_BITS = 5  # ... and interpolates on a 1/32-pixel grid
INTER_TAB_SIZE = 1 << INTER_BITS
BLUR_KERNEL = np.array([1.0, 4.0, 6.0, 4.0, 1.0], dtype=np.float32) / 16.0  # cv2 5x5, sigma 0


def _linear_taps(n_out: int, n_in: int, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of OpenCV's half-pixel bilinear resampling along one axis."""
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * scale - 0.5
    low = np.floor(src)
    frac = src - low
    low = low.astype(np.int64)
    frac[low < 0] = 0.0
    low[low < 0] = 0
    at_end = low >= n_in - 1
    frac[at_end] = 0.0
    low[at_end] = n_in - 1
    high = np.minimum(low + 1, n_in - 1)
    return low, high, frac.astype(np.float32)


def resize_linear(
    image: np.ndarray, height: int, width: int, scale_y: float | None = None, scale_x: float | None = None
) -> np.ndarray:
    """``cv2.resize(..., INTER_LINEAR)`` of a float HxW(xC) array; ``scale_*`` = source px per output px."""
    in_h, in_w = image.shape[:2]
    scale_y = in_h / height if scale_y is None else scale_y
    scale_x = in_w / width if scale_x is None else scale_x
    img = image.astype(np.float32, copy=False)
    y0, y1, fy = _linear_taps(height, in_h, scale_y)
    x0, x1, fx = _linear_taps(width, in_w, scale_x)
    fx = fx.reshape((1, -1) + (1,) * (img.ndim - 2))
    rows = img[:, x0] * (1.0 - fx) + img[:, x1] * fx
    fy = fy.reshape((-1,) + (1,) * (img.ndim - 1))
    return (rows[y0] * (1.0 - fy) + rows[y1] * fy).astype(np.float32)


def resize_nearest(
    label: np.ndarray, height: int, width: int, scale_y: float | None = None, scale_x: float | None = None
) -> np.ndarray:
    """``cv2.resize(..., INTER_NEAREST)``: output pixel ``d`` takes source ``floor(d * scale)``."""
    in_h, in_w = label.shape[:2]
    scale_y = in_h / height if scale_y is None else scale_y
    scale_x = in_w / width if scale_x is None else scale_x
    ys = np.minimum(np.floor(np.arange(height) * scale_y).astype(np.int64), in_h - 1)
    xs = np.minimum(np.floor(np.arange(width) * scale_x).astype(np.int64), in_w - 1)
    return label[ys][:, xs]


def scale(image: np.ndarray, label: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.resize(fx=factor, fy=factor)``: output ``round(n * factor)`` pixels, mapped with ``1/factor``."""
    height = round(image.shape[0] * factor)  # cv2 rounds half to even, as Python's round does
    width = round(image.shape[1] * factor)
    inverse = 1.0 / factor
    return (
        resize_linear(image, height, width, inverse, inverse),
        resize_nearest(label, height, width, inverse, inverse),
    )


def rotation_matrix(center_x: float, center_y: float, degrees: float) -> np.ndarray:
    """``cv2.getRotationMatrix2D(center, degrees, 1)``: 2x3, counter-clockwise for positive angles."""
    a = math.cos(math.radians(degrees))
    b = math.sin(math.radians(degrees))
    return np.array(
        [[a, b, (1 - a) * center_x - b * center_y], [-b, a, b * center_x + (1 - a) * center_y]],
        dtype=np.float64,
    )


def _affine_source_coords(inverse: np.ndarray, h: int, w: int, round_delta: int, shift: int) -> tuple[np.ndarray, ...]:
    """OpenCV's fixed-point source coordinates of every output pixel for ``warpAffine``.

    The inverse map is applied in 1/1024-pixel fixed point (OpenCV's ``AB_BITS``): per-column and per-row terms
    rounded half to even, ``round_delta`` added, then shifted right by ``shift`` bits.
    """
    xs = np.arange(w, dtype=np.float64)
    ys = np.arange(h, dtype=np.float64)[:, None]
    adelta = np.rint(inverse[0, 0] * xs * AFFINE_SCALE).astype(np.int64)
    bdelta = np.rint(inverse[1, 0] * xs * AFFINE_SCALE).astype(np.int64)
    x0 = np.rint((inverse[0, 1] * ys + inverse[0, 2]) * AFFINE_SCALE).astype(np.int64) + round_delta
    y0 = np.rint((inverse[1, 1] * ys + inverse[1, 2]) * AFFINE_SCALE).astype(np.int64) + round_delta
    return (x0 + adelta) >> shift, (y0 + bdelta) >> shift


def _invert_affine(matrix: np.ndarray) -> np.ndarray:
    """The 2x3 inverse exactly as ``cv2.warpAffine`` computes it (double precision, same operation order)."""
    m = matrix.astype(np.float64).ravel().copy()
    det = m[0] * m[4] - m[1] * m[3]
    det = 1.0 / det if det != 0 else 0.0
    a11, a22 = m[4] * det, m[0] * det
    m[0], m[1], m[3], m[4] = a11, m[1] * -det, m[3] * -det, a22
    b1 = -m[0] * m[2] - m[1] * m[5]
    b2 = -m[3] * m[2] - m[4] * m[5]
    m[2], m[5] = b1, b2
    return m.reshape(2, 3)


def rotate(
    image: np.ndarray,
    label: np.ndarray,
    degrees: float,
    pad_value: Sequence[float],
    ignore: int = IGNORE_LABEL,
) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.warpAffine`` by ``getRotationMatrix2D((w/2, h/2), degrees, 1)``, same size, constant borders.

    Image: ``INTER_LINEAR`` on source coordinates quantised to 1/32 pixel, float32 weights
    ``(1-fy)(1-fx), (1-fy)fx, fy(1-fx), fy fx`` summed in that order; a tap outside the image reads
    ``pad_value``, and a pixel whose four taps are all outside is ``pad_value``. Label:
    ``INTER_NEAREST`` (the source coordinate rounded in fixed point), outside -> ``ignore``.
    """
    h, w = label.shape
    inverse = _invert_affine(rotation_matrix(w / 2, h / 2, degrees))
    # label: nearest neighbour
    nx, ny = _affine_source_coords(inverse, h, w, AFFINE_SCALE // 2, AFFINE_BITS)
    inside = (nx >= 0) & (nx < w) & (ny >= 0) & (ny < h)
    out_label = np.full_like(label, ignore)
    out_label[inside] = label[ny[inside], nx[inside]]
    # image: bilinear on 1/32-pixel coordinates
    fixed_x, fixed_y = _affine_source_coords(inverse, h, w, AFFINE_SCALE // INTER_TAB_SIZE // 2,
                                             AFFINE_BITS - INTER_BITS)
    x0, y0 = fixed_x >> INTER_BITS, fixed_y >> INTER_BITS
    fx = ((fixed_x & (INTER_TAB_SIZE - 1)).astype(np.float32) / np.float32(INTER_TAB_SIZE))[..., None]
    fy = ((fixed_y & (INTER_TAB_SIZE - 1)).astype(np.float32) / np.float32(INTER_TAB_SIZE))[..., None]
    one = np.float32(1.0)
    pad = np.asarray(pad_value, dtype=np.float32)
    img = image.astype(np.float32, copy=False)

    def tap(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        ok = (xx >= 0) & (xx < w) & (yy >= 0) & (yy < h)
        values = np.broadcast_to(pad, (h, w, img.shape[2])).copy()
        values[ok] = img[yy[ok], xx[ok]]
        return values

    out = (tap(y0, x0) * ((one - fy) * (one - fx)) + tap(y0, x0 + 1) * ((one - fy) * fx)
           + tap(y0 + 1, x0) * (fy * (one - fx)) + tap(y0 + 1, x0 + 1) * (fy * fx))
    all_outside = (x0 >= w) | (x0 + 1 < 0) | (y0 >= h) | (y0 + 1 < 0)
    out[all_outside] = pad
    return out.astype(np.float32), out_label


def gaussian_blur(image: np.ndarray) -> np.ndarray:
    """``cv2.GaussianBlur(image, (5, 5), 0)``: separable binomial kernel, reflect-101 borders."""
    img = image.astype(np.float32, copy=False)
    radius = len(BLUR_KERNEL) // 2
    pad = [(radius, radius), (0, 0)] + [(0, 0)] * (img.ndim - 2)
    padded = np.pad(img, pad, mode="reflect")  # numpy "reflect" = OpenCV BORDER_REFLECT_101
    rows = sum(BLUR_KERNEL[i] * padded[i : i + img.shape[0]] for i in range(len(BLUR_KERNEL)))
    pad = [(0, 0), (radius, radius)] + [(0, 0)] * (img.ndim - 2)
    padded = np.pad(rows, pad, mode="reflect")
    return sum(BLUR_KERNEL[i] * padded[:, i : i + img.shape[1]] for i in range(len(BLUR_KERNEL))).astype(
        np.float32
    )


def pad_to(
    image: np.ndarray, label: np.ndarray, height: int, width: int, pad_value: Sequence[float], ignore: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pad bottom/right-heavy (``top = pad // 2``) up to at least ``height x width``, as ``Crop`` does."""
    h, w = label.shape
    pad_h, pad_w = max(height - h, 0), max(width - w, 0)
    if pad_h == 0 and pad_w == 0:
        return image, label
    top, left = pad_h // 2, pad_w // 2
    out_image = np.empty((h + pad_h, w + pad_w, image.shape[2]), dtype=np.float32)
    out_image[...] = np.asarray(pad_value, dtype=np.float32)
    out_image[top : top + h, left : left + w] = image
    out_label = np.full((h + pad_h, w + pad_w), ignore, dtype=label.dtype)
    out_label[top : top + h, left : left + w] = label
    return out_image, out_label


@dataclass(frozen=True)
class RandScale:
    """Scale both sides by one factor drawn uniformly from ``scale`` (one ``rng.random()``)."""

    scale: tuple[float, float]

    def __call__(
        self, image: np.ndarray, label: np.ndarray, rng: random.Random
    ) -> tuple[np.ndarray, np.ndarray]:
        factor = self.scale[0] + (self.scale[1] - self.scale[0]) * rng.random()
        return scale(image, label, factor)


@dataclass(frozen=True)
class RandRotate:
    """With probability ``p`` rotate by an angle drawn uniformly from ``degrees``; pad image / ignore label."""

    degrees: tuple[float, float] = ROTATE_DEGREES
    pad_value: tuple[float, float, float] = IMAGENET_MEAN_255
    ignore: int = IGNORE_LABEL
    p: float = ROTATE_P

    def __call__(
        self, image: np.ndarray, label: np.ndarray, rng: random.Random
    ) -> tuple[np.ndarray, np.ndarray]:
        if rng.random() < self.p:
            angle = self.degrees[0] + (self.degrees[1] - self.degrees[0]) * rng.random()
            return rotate(image, label, angle, self.pad_value, self.ignore)
        return image, label


@dataclass(frozen=True)
class RandomGaussianBlur:
    """With probability ``p`` blur the image with the 5x5 kernel; the label is untouched."""

    p: float = BLUR_P

    def __call__(
        self, image: np.ndarray, label: np.ndarray, rng: random.Random
    ) -> tuple[np.ndarray, np.ndarray]:
        if rng.random() < self.p:
            return gaussian_blur(image), label
        return image, label


@dataclass(frozen=True)
class RandomHorizontalFlip:
    """With probability ``p`` mirror image and label left-right."""

    p: float = FLIP_P

    def __call__(
        self, image: np.ndarray, label: np.ndarray, rng: random.Random
    ) -> tuple[np.ndarray, np.ndarray]:
        if rng.random() < self.p:
            return image[:, ::-1].copy(), label[:, ::-1].copy()
        return image, label


@dataclass(frozen=True)
class RandomCrop:
    """Pad to ``size`` (image with ``pad_value``, label with ``ignore``), then take a random ``size`` crop.

    The crop is redrawn (up to 31 times) while it holds less than 85 % of the target (label 1)
    pixels; the last draw is kept either way.
    """

    size: int = CROP_SIZE
    pad_value: tuple[float, float, float] = IMAGENET_MEAN_255
    ignore: int = IGNORE_LABEL

    def __call__(
        self, image: np.ndarray, label: np.ndarray, rng: random.Random
    ) -> tuple[np.ndarray, np.ndarray]:
        image, label = pad_to(image, label, self.size, self.size, self.pad_value, self.ignore)
        h, w = label.shape
        total = int(np.sum(label == 1))
        attempts = 0
        while True:
            top = rng.randint(0, h - self.size)
            left = rng.randint(0, w - self.size)
            crop = label[top : top + self.size, left : left + self.size]
            if np.sum(crop == 1) >= CROP_KEEP_FOREGROUND * total or attempts > CROP_RETRIES:
                break
            attempts += 1
        return image[top : top + self.size, left : left + self.size].copy(), crop.copy()


@dataclass(frozen=True)
class Resize:
    """Resize to ``size x size`` (aspect not kept): bilinear image, nearest label. The test transform."""

    size: int = CROP_SIZE

    def __call__(
        self, image: np.ndarray, label: np.ndarray, rng: random.Random | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        return resize_linear(image, self.size, self.size), resize_nearest(label, self.size, self.size)


class Compose:
    """Apply transforms in order with one RNG."""

    def __init__(self, transforms: Sequence[object]) -> None:
        self.transforms = tuple(transforms)

    def __call__(
        self, image: np.ndarray, label: np.ndarray, rng: random.Random | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        rng = rng if rng is not None else random.Random()
        for transform in self.transforms:
            image, label = transform(image, label, rng)
        return image, label


def train_transform(scale_range: tuple[float, float] = PASCAL_SCALE, size: int = CROP_SIZE) -> Compose:
    """The official training pipeline: RandScale, RandRotate, GaussianBlur, HFlip, RandomCrop."""
    return Compose(
        [RandScale(scale_range), RandRotate(), RandomGaussianBlur(), RandomHorizontalFlip(), RandomCrop(size)]
    )


def eval_transform(size: int = CROP_SIZE) -> Compose:
    """The official test pipeline: a plain resize to ``size x size`` (the raw label is kept separately)."""
    return Compose([Resize(size)])
