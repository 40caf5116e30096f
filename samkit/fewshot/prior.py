"""FSSAM's parameter-free pieces: masked average, cosine maps, the DINOv2 pseudo-prompt priors (PPG)
and iterative memory refinement (IMR). Formulas: FSSAM paper section 3 / reference spec sections 1.3-1.4.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

AREA_EPS = 5e-4
"""Added to the mask area in the masked average (the official ``Weighted_GAP``)."""
COS_EPS = 1e-7
"""Added to cosine denominators and min-max ranges throughout FSSAM."""


def weighted_gap(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked average over space: (N, C, H, W), (N, 1, H, W) -> (N, C, 1, 1) = sum(F*m) / (sum(m) + 5e-4)."""
    area = mask.sum(dim=(-2, -1), keepdim=True) + AREA_EPS
    return (features * mask).sum(dim=(-2, -1), keepdim=True) / area


def cosine_map(features: torch.Tensor, prototype: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every position with a prototype: (N, C, H, W), (N, C, 1, 1) -> (N, H*W)."""
    feats = features.flatten(2)  # (N, C, HW)
    proto = prototype.flatten(2).transpose(1, 2)  # (N, 1, C)
    feats_norm = feats.norm(p=2, dim=1, keepdim=True)  # (N, 1, HW)
    proto_norm = proto.norm(p=2, dim=2, keepdim=True)  # (N, 1, 1)
    return ((proto @ feats) / (proto_norm @ feats_norm + COS_EPS)).squeeze(1)


def minmax(values: torch.Tensor) -> torch.Tensor:
    """Min-max normalise over the last dimension: (x - min) / (max - min + 1e-7)."""
    low = values.min(dim=-1, keepdim=True)[0]
    high = values.max(dim=-1, keepdim=True)[0]
    return (values - low) / (high - low + COS_EPS)


def minmax_map(maps: torch.Tensor) -> torch.Tensor:
    """Per-map min-max over space: (N, 1, H, W) -> same shape."""
    return minmax(maps.flatten(2)).view_as(maps)


def resize_aligned(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize with ``align_corners=True`` (FSSAM's resize for masks, priors and similarity maps)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=True)


def pseudo_prompt_priors(
    query_feats: torch.Tensor, support_feats: torch.Tensor, support_masks: torch.Tensor, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The FG prior and the FG-BG contrast prior of each shot, upsampled to ``size``.

    ``query_feats`` (B, C, h, w), ``support_feats`` (B, K, C, h, w), ``support_masks`` (B, K, 1, H, W)
    in {0, 1}. Returns ``prior_fg``, ``prior_ae`` (B, K, H', W') in [0, 1]; FSSAM averages them over K.
    """
    batch, shots = support_feats.shape[:2]
    grid = tuple(query_feats.shape[-2:])
    query = query_feats.unsqueeze(1).expand(-1, shots, -1, -1, -1).flatten(0, 1)  # (B*K, C, h, w)
    feats = support_feats.flatten(0, 1)
    masks = resize_aligned(support_masks.flatten(0, 1), grid)  # (B*K, 1, h, w)
    fg = minmax(cosine_map(query, weighted_gap(feats, masks))).view(-1, 1, *grid)
    bg = minmax(cosine_map(query, weighted_gap(feats, 1 - masks))).view(-1, 1, *grid)
    fg, bg = resize_aligned(fg, size), resize_aligned(bg, size)
    contrast = minmax_map(torch.relu(fg - bg))
    return fg.view(batch, shots, *size), contrast.view(batch, shots, *size)


def support_similarity(query_mem: torch.Tensor, support_mem: torch.Tensor, support_masks: torch.Tensor) -> torch.Tensor:
    """Mean over shots of the min-max cosine map between query memory and each support FG prototype.

    ``query_mem`` (B, C, h, w), ``support_mem`` (B, K, C, h, w), ``support_masks`` (B, K, 1, h, w) -> (B, 1, h, w).
    """
    shots = support_mem.shape[1]
    maps = [
        minmax(cosine_map(query_mem, weighted_gap(support_mem[:, shot], support_masks[:, shot])))
        for shot in range(shots)
    ]
    return torch.stack(maps, dim=1).mean(dim=1).view(query_mem.shape[0], 1, *query_mem.shape[-2:])


def refine_memory(
    fg_mem: torch.Tensor,
    ae_mem: torch.Tensor,
    prior_fg: torch.Tensor,
    prior_ae: torch.Tensor,
    support_sim: torch.Tensor,
    iterations: int,
) -> torch.Tensor:
    """Iterative memory refinement (IMR, version v1): fuse query-FG memory into the contrast memory.

    All maps at the memory grid: memories (B, C, h, w), priors and ``support_sim`` (B, 1, h, w).
    Returns the refined contrast memory (B, C, h, w).
    """
    size = fg_mem.shape[-2:]
    for _ in range(iterations):
        self_sim = minmax(cosine_map(fg_mem, weighted_gap(ae_mem, prior_ae))).view(-1, 1, *size)
        weight = torch.relu(self_sim + (support_sim - 1.0))
        ae_mem = fg_mem * weight + ae_mem * (1.0 - weight)
        prior_ae = minmax_map(prior_fg * weight + prior_ae * (1.0 - weight))
    return ae_mem
