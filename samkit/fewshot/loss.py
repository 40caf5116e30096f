"""FSSAM's training loss: the squared-denominator Dice loss of the official ``WeightedDiceLoss``."""

from __future__ import annotations

import torch

DICE_EPS = 1e-8


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``1 - 2 sum(p t) / max(sum(p^2) + sum(t^2), 1e-8)``.

    ``logits`` (B, H, W); ``target`` (B, H, W) labels where 1 is the object and anything else
    (0 background, 255 ignore) counts as background, as in the official code.
    """
    probability = torch.sigmoid(logits.float()).flatten(1)
    truth = (target == 1).float().flatten(1)
    denominator = (probability**2).sum(dim=1) + (truth**2).sum(dim=1)
    return (1 - 2 * (probability * truth).sum(dim=1) / denominator.clamp(min=DICE_EPS)).mean()
