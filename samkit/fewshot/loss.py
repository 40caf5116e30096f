"""FSSAM's training loss: the official ``WeightedDiceLoss`` (sigmoid, squared denominators).

Per sample, with ``p = sigmoid(logits)`` and ``t = (label == 1)`` (ignore pixels, 255, count as
background, as in the official code)::

    L = 1 - 2 * sum(p * t) / max(sum(p ** 2) + sum(t ** 2), 1e-8)

and the loss is the mean over the batch (the official ``reduction="sum"`` divides the sum by the
batch size: the same number).
"""

from __future__ import annotations

import torch

from samkit.errors import InputError

DICE_EPS = 1e-8


def dice_loss(logits: torch.Tensor, labels: torch.Tensor, eps: float = DICE_EPS) -> torch.Tensor:
    """Mean dice loss of (B, H, W) logits against (B, H, W) labels holding 1 (object), 0 and 255."""
    if logits.shape != labels.shape or logits.dim() != 3:
        raise InputError(
            f"dice_loss needs (B, H, W) logits and labels of the same shape, got {tuple(logits.shape)} "
            f"and {tuple(labels.shape)}"
        )
    probability = torch.sigmoid(logits.float()).flatten(1)  # (B, H*W)
    target = (labels == 1).float().flatten(1)
    denominator = (probability**2).sum(dim=-1) + (target**2).sum(dim=-1)
    dice = 2 * (probability * target).sum(dim=-1) / denominator.clamp(min=eps)
    return (1 - dice).mean()
