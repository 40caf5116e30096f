"""``LazyFrames``: sam2's ``inference_state["images"]`` decoded on demand from a ``VideoSource``."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from samkit.io.video import VideoSource

IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)
"""sam2's ``load_video_frames`` normalisation."""
FRAME_CACHE_SIZE = 2
PIXEL_MAX = 255.0


class LazyFrames:
    """``inference_state["images"]`` that decodes and normalises a frame only when sam2 asks for it.

    Resize and normalisation repeat ``sam2.utils.misc.load_video_frames_from_jpg_images`` operation
    for operation (PIL resize to a square, /255 in float64, cast to float32, -mean, /std), so the
    model sees bit-identical inputs. Keeps only the last ``cache_size`` frames.
    """

    def __init__(self, video: VideoSource, image_size: int, cache_size: int = FRAME_CACHE_SIZE) -> None:
        self.video = video
        self.image_size = image_size
        self.cache_size = cache_size
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._mean = torch.tensor(IMAGE_MEAN, dtype=torch.float32)[:, None, None]
        self._std = torch.tensor(IMAGE_STD, dtype=torch.float32)[:, None, None]

    def __len__(self) -> int:
        return len(self.video)

    def __getitem__(self, index: int) -> torch.Tensor:
        cached = self._cache.get(index)
        if cached is not None:
            self._cache.move_to_end(index)
            return cached
        from PIL import Image

        frame = Image.fromarray(self.video[index]).resize((self.image_size, self.image_size))
        image = torch.from_numpy(np.array(frame) / PIXEL_MAX).permute(2, 0, 1).to(torch.float32)  # 3 x S x S
        image -= self._mean
        image /= self._std
        self._cache[index] = image
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return image

    def clear(self) -> None:
        """Drop the decoded frames."""
        self._cache.clear()
