"""A tiny self-contained task: a small conv net segments bright shapes on a noisy background.

It exists to check an installation and a ``torchrun`` setup end to end in seconds
(``samkit train toy --config toy.yaml``), and it is the task the engine's tests train. Samples are
generated from (data_seed, index); a random flip and noise are drawn from the global RNGs, which
the engine seeds per sample.

Task settings (the experiment's ``task:`` section): ``size`` (32), ``train_samples`` (64),
``val_samples`` (16), ``width`` (8), ``data_seed`` (0), ``frozen`` (module names, e.g.
``["stem"]``), ``batchnorm`` (false: a BatchNorm in the stem), ``step_delay`` (0 seconds: sleep
per training step, so that a demo or a test can interrupt a run).
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from samkit.errors import InputError

DEFAULTS: dict[str, Any] = {"size": 32, "train_samples": 64, "val_samples": 16, "width": 8, "data_seed": 0,
                            "frozen": [], "batchnorm": False, "step_delay": 0.0}
VAL_SEED_OFFSET = 1_000_003
BACKGROUND_LEVEL, BACKGROUND_NOISE = 0.25, 0.1
MIN_SHAPE_BRIGHTNESS = 0.6
AUGMENT_NOISE = 0.05
FLIP_PROBABILITY = 0.5
MIN_FRACTION, MAX_FRACTION = 0.2, 0.5
CLASSES = 2


def make_sample(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One (3, size, size) float image and its (size, size) 0/1 mask: a disc or a square."""
    rng = np.random.default_rng(seed)
    image = rng.normal(BACKGROUND_LEVEL, BACKGROUND_NOISE, size=(3, size, size))
    radius = rng.uniform(MIN_FRACTION, MAX_FRACTION) * size / 2
    cy, cx = rng.uniform(radius, size - radius, size=2)
    yy, xx = np.mgrid[:size, :size]
    if rng.random() < 0.5:
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2
    else:
        mask = (np.abs(yy - cy) <= radius) & (np.abs(xx - cx) <= radius)
    colour = rng.uniform(MIN_SHAPE_BRIGHTNESS, 1.0, size=3)
    image[:, mask] = colour[:, None]
    return image.astype(np.float32), mask.astype(np.int64)


class ShapesDataset(torch.utils.data.Dataset):
    """``count`` generated samples; ``augment`` adds a random flip and noise from the global RNGs."""

    def __init__(self, count: int, size: int, seed: int, augment: bool) -> None:
        self.count, self.size, self.seed, self.augment = count, size, seed, augment

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.count:
            raise IndexError(index)
        image, mask = make_sample(self.size, self.seed * VAL_SEED_OFFSET + index)
        image_t, mask_t = torch.from_numpy(image), torch.from_numpy(mask)
        if self.augment:
            if random.random() < FLIP_PROBABILITY:
                image_t, mask_t = image_t.flip(-1), mask_t.flip(-1)
            image_t = image_t + AUGMENT_NOISE * torch.randn_like(image_t) * float(np.random.uniform())
        return {"image": image_t, "mask": mask_t}


class ToySegmenter(nn.Module):
    """stem (conv, optional BatchNorm) -> body (conv) -> head (1x1 conv to one logit per pixel)."""

    def __init__(self, width: int, batchnorm: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1)]
        if batchnorm:
            layers.append(nn.BatchNorm2d(width))
        self.stem = nn.Sequential(*layers, nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(width, 1, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, H, W)
        return self.head(self.body(self.stem(images)))[:, 0]


def intersection_union(logits: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class (background, foreground) pixel intersections and unions of ``logits > 0`` vs ``masks``."""
    predicted = (logits > 0).long()
    intersection = torch.stack([((predicted == c) & (masks == c)).sum() for c in range(CLASSES)])
    union = torch.stack([((predicted == c) | (masks == c)).sum() for c in range(CLASSES)])
    return intersection, union


class ToyTask:
    """The engine Task for ``ToySegmenter`` on generated shapes (BCE loss, IoU metrics)."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        unknown = sorted(set(settings) - set(DEFAULTS))
        if unknown:
            raise InputError(f"unknown toy task settings {unknown}; known: {sorted(DEFAULTS)}")
        self.settings = {**DEFAULTS, **settings}

    def build_model(self) -> ToySegmenter:
        return ToySegmenter(int(self.settings["width"]), bool(self.settings["batchnorm"]))

    def train_dataset(self) -> ShapesDataset:
        s = self.settings
        return ShapesDataset(int(s["train_samples"]), int(s["size"]), int(s["data_seed"]), augment=True)

    def val_dataset(self) -> ShapesDataset:
        s = self.settings
        return ShapesDataset(int(s["val_samples"]), int(s["size"]), int(s["data_seed"]) + 1, augment=False)

    def frozen_modules(self, model: nn.Module) -> list[str]:
        return list(self.settings["frozen"])

    def training_step(self, model: nn.Module, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        if self.settings["step_delay"]:
            time.sleep(float(self.settings["step_delay"]))
        logits = model(batch["image"])
        loss = F.binary_cross_entropy_with_logits(logits, batch["mask"].float())
        return loss, {"foreground": batch["mask"].float().mean()}

    def eval_step(self, model: nn.Module, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        intersection, union = intersection_union(model(batch["image"]), batch["mask"])
        return {"intersection": intersection, "union": union, "samples": torch.tensor(len(batch["mask"]))}

    def compute_metrics(self, totals: Mapping[str, torch.Tensor]) -> dict[str, float]:
        iou = totals["intersection"].double() / totals["union"].double().clamp(min=1)
        return {"iou": float(iou[1]), "miou": float(iou.mean()), "samples": float(totals["samples"])}


def build_task(settings: Mapping[str, Any]) -> ToyTask:
    """Task factory for ``samkit train toy`` / ``samkit eval toy``."""
    return ToyTask(settings)
