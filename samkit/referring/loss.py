"""ReferSAM's training loss: point-sampled BCE + Dice on the final mask and on the coarse mask.

Mask2Former / PointRend style, as the official ``SegMaskLoss``: for each prediction, ``num_points *
oversample_ratio`` uniform points are drawn, the ``importance_sample_ratio * num_points`` of them with
the smallest |logit| of that prediction are kept, and uniform points fill up to ``num_points``. Logits
and the (float) target are read at those points by bilinear ``grid_sample`` (align_corners=False), so
target labels can be soft at edges and prediction and target may have different resolutions: the
1/4-resolution coarse map is supervised by the same full-resolution target, without resizing it.

BCE is averaged over points then over the batch; Dice is ``1 - (2 sum(p t) + 1) / (sum p + sum t + 1)``
per sample, averaged over the batch. ``total_loss`` is the weighted sum (all weights 1 officially).
Points come from ``torch.rand`` in the official call order (final mask: oversampled then uniform;
then the coarse mask likewise), so a seeded global RNG reproduces the official loss bit for bit; a
``generator`` may be passed instead.

Official quirk (``official_compat=True`` reproduces it): ``grid_sample`` reads with zero padding, so a
point within half a pixel of the border mixes in zeros -- a foreground target touching the border is
read as a soft label down to 0.5 there, and border logits (a larger share of points on the 1/4 coarse
map) are pulled towards 0. The default reads with border padding, so a constant map samples as itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from samkit.errors import InputError

NUM_POINTS = 112 * 112
OVERSAMPLE_RATIO = 3.0
IMPORTANCE_SAMPLE_RATIO = 0.75
DICE_SMOOTH = 1.0
LOSS_KEYS = ("loss_mask", "loss_dice", "loss_mask_aux", "loss_dice_aux", "total_loss")


def point_sample(maps: torch.Tensor, coords: torch.Tensor, padding_mode: str = "border") -> torch.Tensor:
    """Bilinear values of maps (N, C, H, W) at coords (N, P, 2) as (x, y) in [0, 1] -> (N, C, P).

    ``padding_mode="zeros"`` is the official reading (see the module docstring)."""
    grid = (2.0 * coords - 1.0).unsqueeze(2)  # (N, P, 1, 2)
    return F.grid_sample(maps, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False).squeeze(
        3
    )


def uncertain_point_coords(
    logits: torch.Tensor,
    num_points: int,
    oversample_ratio: float,
    importance_sample_ratio: float,
    generator: torch.Generator | None = None,
    padding_mode: str = "border",
) -> torch.Tensor:
    """Point coordinates (N, num_points, 2): the most uncertain (|logit| smallest) of an oversampled set,
    then uniform ones. logits (N, 1, H, W)."""
    if oversample_ratio < 1 or not 0 <= importance_sample_ratio <= 1:
        raise InputError(
            f"need oversample_ratio >= 1 and 0 <= importance_sample_ratio <= 1, "
            f"got {oversample_ratio} and {importance_sample_ratio}"
        )
    batch = logits.shape[0]
    num_sampled = int(num_points * oversample_ratio)
    candidates = torch.rand(batch, num_sampled, 2, device=logits.device, generator=generator)
    uncertainty = -point_sample(
        logits, candidates.to(logits.dtype), padding_mode
    ).abs()  # (N, 1, num_sampled)
    num_uncertain = int(importance_sample_ratio * num_points)
    index = torch.topk(uncertainty[:, 0], k=num_uncertain, dim=1)[1]
    coords = candidates.gather(1, index.unsqueeze(-1).expand(-1, -1, 2))
    num_random = num_points - num_uncertain
    if num_random > 0:
        uniform = torch.rand(batch, num_random, 2, device=logits.device, generator=generator)
        coords = torch.cat([coords, uniform], dim=1)
    return coords


def sigmoid_bce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """BCE with logits, mean over points (dim 1..), then over the batch."""
    loss = F.binary_cross_entropy_with_logits(logits.flatten(1), labels.flatten(1), reduction="none")
    return loss.mean(1).mean()


def dice_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``1 - (2 sum(p t) + 1) / (sum p + sum t + 1)`` per sample with p = sigmoid(logits), batch mean."""
    probs = logits.sigmoid().flatten(1)
    labels = labels.flatten(1)
    numerator = 2 * (probs * labels).sum(-1)
    denominator = probs.sum(-1) + labels.sum(-1)
    return (1 - (numerator + DICE_SMOOTH) / (denominator + DICE_SMOOTH)).mean()


@dataclass(frozen=True)
class LossWeights:
    """Weights of the four terms of ``total_loss`` (the official ones are all 1)."""

    mask: float = 1.0
    dice: float = 1.0
    mask_aux: float = 1.0
    dice_aux: float = 1.0


def _as_maps(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """(B, H, W) or (B, 1, H, W) -> (B, 1, H, W)."""
    if tensor.dim() == 4 and tensor.shape[1] == 1:
        return tensor
    if tensor.dim() == 3:
        return tensor.unsqueeze(1)
    raise InputError(f"{name} must be (B, H, W) or (B, 1, H, W), got shape {tuple(tensor.shape)}")


class ReferringLoss(nn.Module):
    """BCE + Dice on the final mask and on the coarse mask (``SegMaskLoss`` of the official code)."""

    def __init__(
        self,
        num_points: int = NUM_POINTS,
        oversample_ratio: float = OVERSAMPLE_RATIO,
        importance_sample_ratio: float = IMPORTANCE_SAMPLE_RATIO,
        weights: LossWeights | None = None,
        official_compat: bool = False,
    ) -> None:
        super().__init__()
        if num_points < 1:
            raise InputError(f"num_points must be >= 1, got {num_points}")
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        self.weights = weights or LossWeights()
        self.official_compat = official_compat
        self.padding_mode = "zeros" if official_compat else "border"

    def mask_losses(
        self, logits: torch.Tensor, target: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(BCE, Dice) of logits (B, 1, h, w) against target (B, 1, H, W) at sampled points."""
        with torch.no_grad():
            coords = uncertain_point_coords(
                logits,
                self.num_points,
                self.oversample_ratio,
                self.importance_sample_ratio,
                generator,
                self.padding_mode,
            )
            labels = point_sample(target, coords.to(target.dtype), self.padding_mode).squeeze(1)
        point_logits = point_sample(logits, coords.to(logits.dtype), self.padding_mode).squeeze(1)
        return sigmoid_bce_loss(point_logits, labels), dice_loss(point_logits, labels)

    def forward(
        self,
        pred_logits: torch.Tensor,
        target: torch.Tensor,
        coarse_logits: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Loss dict with ``LOSS_KEYS`` (the ``_aux`` pair only when ``coarse_logits`` is given).

        pred_logits (B, H, W) or (B, 1, H, W); target {0, 1} mask (B, H', W') at any resolution;
        coarse_logits (B, 1, h, w) or (B, h, w).
        """
        pred = _as_maps("pred_logits", pred_logits)
        target_maps = _as_maps("target", target).to(pred.dtype)
        if target_maps.shape[0] != pred.shape[0]:
            raise InputError(
                f"pred_logits has batch {pred.shape[0]} but target has batch {target_maps.shape[0]}"
            )
        losses = {}
        losses["loss_mask"], losses["loss_dice"] = self.mask_losses(pred, target_maps, generator)
        if coarse_logits is not None:
            coarse = _as_maps("coarse_logits", coarse_logits)
            if coarse.shape[0] != pred.shape[0]:
                raise InputError(
                    f"coarse_logits has batch {coarse.shape[0]} but pred_logits has batch {pred.shape[0]}"
                )
            losses["loss_mask_aux"], losses["loss_dice_aux"] = self.mask_losses(
                coarse, target_maps.to(coarse.dtype), generator
            )
        w = self.weights
        factors = {
            "loss_mask": w.mask,
            "loss_dice": w.dice,
            "loss_mask_aux": w.mask_aux,
            "loss_dice_aux": w.dice_aux,
        }
        losses["total_loss"] = sum(factors[key] * value for key, value in losses.items())
        return losses
