"""Train and test transforms: square resize + ImageNet normalisation (CARIS recipe).

The image is resized to ``size x size`` (bilinear, as torchvision's PIL resize; not SAM's longest-side
resize) and normalised with the ImageNet mean / std (= SAM's pixel mean / std divided by 255).
Training resizes the mask by nearest neighbour to the same square and picks one sentence per
referent, deterministically from (seed, epoch, ref id) so a resumed run sees the same choices.
The test transform keeps the original-resolution mask for original-resolution evaluation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from samkit.errors import InputError
from samkit.referring.data.dataset import ReferringSample

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_PIXEL = 255.0


def resize_normalize(image: np.ndarray, size: int):
    """(H, W, 3) uint8 -> (3, size, size) float32 tensor, square-resized and ImageNet-normalised."""
    import torch
    from PIL import Image

    resized = Image.fromarray(image).resize((size, size), Image.BILINEAR)
    pixels = torch.from_numpy(np.asarray(resized, dtype=np.float32) / MAX_PIXEL).permute(2, 0, 1)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (pixels - mean) / std


def resize_mask(mask: np.ndarray, size: int):
    """(H, W) {0, 1} -> (size, size) uint8 tensor by nearest neighbour (PIL)."""
    import torch
    from PIL import Image

    resized = Image.fromarray(mask.astype(np.uint8)).resize((size, size), Image.NEAREST)
    return torch.from_numpy(np.asarray(resized, dtype=np.uint8).copy())


def _check(sample: ReferringSample, size: int) -> None:
    if size < 1:
        raise InputError(f"the image size must be positive, got {size}")
    if not sample.sentences:
        raise InputError(f"ref {sample.ref_id} has no sentence")


class TrainTransform:
    """Sample -> {"image" (3, S, S), "mask" (S, S) uint8, "sentence", "ref_id", "no_target"}."""

    def __init__(self, size: int = 448, seed: int = 0) -> None:
        self.size = size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Change the sentence choice (call once per epoch)."""
        self.epoch = epoch

    def __call__(self, sample: ReferringSample) -> dict[str, Any]:
        _check(sample, self.size)
        rng = np.random.default_rng((self.seed, self.epoch, sample.ref_id & 0xFFFFFFFF))
        sentence = sample.sentences[int(rng.integers(len(sample.sentences)))]
        return {
            "image": resize_normalize(sample.image, self.size),
            "mask": resize_mask(sample.mask, self.size),
            "sentence": sentence,
            "ref_id": sample.ref_id,
            "no_target": sample.no_target,
        }


class TestTransform:
    """Sample -> {"image" (3, S, S), "mask" (H, W) uint8 at the original resolution, "sentences", ...}."""

    __test__ = False  # not a pytest class

    def __init__(self, size: int = 448) -> None:
        self.size = size

    def __call__(self, sample: ReferringSample) -> dict[str, Any]:
        import torch

        _check(sample, self.size)
        return {
            "image": resize_normalize(sample.image, self.size),
            "mask": torch.from_numpy(sample.mask.astype(np.uint8)),
            "sentences": list(sample.sentences),
            "ref_id": sample.ref_id,
            "no_target": sample.no_target,
            "original_size": tuple(sample.mask.shape),
        }
