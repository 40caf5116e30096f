"""DINOv2 ViT over timm with the torch.hub key names, and DINOv2's exact patch-feature path.

FSSAM uses the frozen DINOv2 ViT-B/14 of ``torch.hub.load('facebookresearch/dinov2', 'dinov2_vitb14')``.
timm's ``vit_base_patch14_dinov2`` has the same parameter names except ``mask_token`` (a hub-only,
unused-at-inference parameter), which :class:`DinoV2` adds so official checkpoints load strictly.
The feature path follows DINOv2 itself, not timm: the position embedding is resampled with DINOv2's
bicubic ``scale_factor=(g + 0.1) / M`` kludge (no antialias) and the last block's output goes through
the final LayerNorm (``get_intermediate_layers(..., norm=True)``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from samkit.errors import InputError

PATCH_SIZE = 14
INTERPOLATE_OFFSET = 0.1
"""DINOv2's historical offset added to the target grid size before computing the resampling scale."""
PRETRAIN_IMAGE_SIZE = 518
"""DINOv2 ViT-B/14 was trained at 518 px: 37 x 37 patches + 1 class token = 1370 position embeddings."""
LAYER_NORM_EPS = 1e-6
LAYER_SCALE_INIT = 1.0
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PIXEL_SCALE = 255.0


@dataclass(frozen=True)
class DinoDims:
    """ViT shape: ViT-B/14 is (768, 12, 12, 518)."""

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    pretrain_size: int = PRETRAIN_IMAGE_SIZE


VITB14 = DinoDims()
TINY_DINO = DinoDims(embed_dim=48, depth=2, num_heads=2, pretrain_size=112)


class DinoV2(nn.Module):
    """timm ``VisionTransformer`` pieces under DINOv2 hub names (cls_token, pos_embed, mask_token, ...)."""

    def __init__(self, dims: DinoDims = VITB14) -> None:
        super().__init__()
        from timm.models.vision_transformer import VisionTransformer

        vit = VisionTransformer(
            img_size=dims.pretrain_size, patch_size=PATCH_SIZE, embed_dim=dims.embed_dim, depth=dims.depth,
            num_heads=dims.num_heads, mlp_ratio=4.0, qkv_bias=True, init_values=LAYER_SCALE_INIT,
            num_classes=0, global_pool="token", dynamic_img_size=True,
        )
        self.dims = dims
        self.cls_token = vit.cls_token
        self.pos_embed = vit.pos_embed
        self.mask_token = nn.Parameter(torch.zeros(1, dims.embed_dim))
        self.patch_embed = vit.patch_embed
        self.blocks = vit.blocks
        self.norm = vit.norm

    def interpolate_pos_encoding(self, grid: int) -> torch.Tensor:
        """Position embeddings for a ``grid x grid`` patch map, resampled exactly as DINOv2 does. (1, 1+g*g, D)"""
        pos_embed = self.pos_embed.float()
        num_patches = pos_embed.shape[1] - 1
        side = math.isqrt(num_patches)
        if grid == side:
            return self.pos_embed
        dim = pos_embed.shape[-1]
        scale = float(grid + INTERPOLATE_OFFSET) / side
        patch_pos = F.interpolate(
            pos_embed[:, 1:].reshape(1, side, side, dim).permute(0, 3, 1, 2),
            scale_factor=(scale, scale), mode="bicubic", antialias=False,
        )
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, grid * grid, dim)
        return torch.cat((pos_embed[:, :1], patch_pos), dim=1).to(self.pos_embed.dtype)

    def last_features(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised last-block patch tokens as a map: (B, 3, S, S) DINOv2-normalised -> (B, D, S/14, S/14)."""
        batch, _, height, width = images.shape
        if height != width or height % PATCH_SIZE:
            raise InputError(f"DINOv2 input must be square with a side divisible by {PATCH_SIZE}, got {height}x{width}")
        grid = height // PATCH_SIZE
        tokens = self.patch_embed.proj(images).flatten(2).transpose(1, 2)  # (B, g*g, D)
        tokens = torch.cat((self.cls_token.expand(batch, -1, -1), tokens), dim=1)
        tokens = tokens + self.interpolate_pos_encoding(grid)
        for block in self.blocks:
            tokens = block(tokens)
        tokens = self.norm(tokens)[:, 1:]
        return tokens.reshape(batch, grid, grid, -1).permute(0, 3, 1, 2).contiguous()


def dino_input(images: torch.Tensor, size: int) -> torch.Tensor:
    """0-255 RGB (N, 3, H, W) -> DINOv2 input: bilinear (align_corners=True) to ``size``, ImageNet-normalised."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1) * PIXEL_SCALE
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1) * PIXEL_SCALE
    resized = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=True)
    return (resized - mean) / std


def build_dino(dims: DinoDims = VITB14, checkpoint: str | os.PathLike[str] | None = None,
               seed: int | None = None) -> DinoV2:
    """A :class:`DinoV2`; ``checkpoint`` is a hub state_dict such as ``dinov2_vitb14_pretrain.pth``."""
    from samkit.checkpoints import load_into

    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        model = DinoV2(dims)
    if checkpoint is not None:
        load_into(model, checkpoint, what="DINOv2 ViT-B/14 (torch.hub key names)")
    return model
