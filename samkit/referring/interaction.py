"""The ViT-Adapter pieces of ReferSAM's VLI: spatial prior CNN, injector, extractor, interaction block.

The deformable attention runs in fp32 at both call sites (inputs up-cast, autocast off) as the
official model intends; the official model instead mutates the attention module to fp32 on every
forward (``self.attn.float()``), which ``official_compat=True`` reproduces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.checkpoint import checkpoint

from samkit.referring.fusion import LAYER_NORM_EPS, VLBiAttnLayer
from samkit.referring.msda import MultiScaleDeformableAttention

ADAPTER_STRIDES = (8, 16, 32)
"""Strides of the adapter feature levels c2, c3, c4."""


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(1, channels, eps=LAYER_NORM_EPS)


def _conv3x3(cin: int, cout: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


class SpatialPriorModule(nn.Module):
    """Convolutional stem giving c1 (64 ch, 1/4) and c2 / c3 / c4 projected to ``embed_dim`` (1/8, 1/16, 1/32)."""

    def __init__(self, inplanes: int, embed_dim: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            _conv3x3(3, inplanes, 2), _group_norm(inplanes), nn.ReLU(inplace=True),
            _conv3x3(inplanes, inplanes, 1), _group_norm(inplanes), nn.ReLU(inplace=True),
            _conv3x3(inplanes, inplanes, 1), _group_norm(inplanes), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )  # fmt: skip
        self.conv2 = nn.Sequential(_conv3x3(inplanes, 2 * inplanes, 2), _group_norm(2 * inplanes), nn.ReLU(inplace=True))
        self.conv3 = nn.Sequential(_conv3x3(2 * inplanes, 4 * inplanes, 2), _group_norm(4 * inplanes), nn.ReLU(inplace=True))
        self.conv4 = nn.Sequential(_conv3x3(4 * inplanes, 4 * inplanes, 2), _group_norm(4 * inplanes), nn.ReLU(inplace=True))
        self.fc2 = nn.Conv2d(2 * inplanes, embed_dim, kernel_size=1)
        self.fc3 = nn.Conv2d(4 * inplanes, embed_dim, kernel_size=1)
        self.fc4 = nn.Conv2d(4 * inplanes, embed_dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        c1 = self.stem(x)
        c2 = self.conv2(c1)
        c3 = self.conv3(c2)
        c4 = self.conv4(c3)
        # (B, D, h, w) -> (B, h*w, D)
        tokens = [fc(c).flatten(2).transpose(1, 2) for fc, c in ((self.fc2, c2), (self.fc3, c3), (self.fc4, c4))]
        return c1, tokens[0], tokens[1], tokens[2]


@dataclass(frozen=True)
class DeformInputs:
    """Reference points (1, Nq, 1, 2), spatial shapes (L, 2) and level start index (L,) of one MSDA call."""

    reference_points: torch.Tensor
    spatial_shapes: torch.Tensor
    level_start_index: torch.Tensor


def _reference_points(shapes: Sequence[tuple[int, int]], device: torch.device) -> torch.Tensor:
    """Normalised (x, y) centres of every cell of each grid, concatenated: (1, sum h*w, 1, 2)."""
    points = []
    for height, width in shapes:
        ref_y, ref_x = torch.meshgrid(
            torch.linspace(0.5, height - 0.5, height, dtype=torch.float32, device=device),
            torch.linspace(0.5, width - 0.5, width, dtype=torch.float32, device=device),
            indexing="ij",
        )
        points.append(torch.stack((ref_x.reshape(-1)[None] / width, ref_y.reshape(-1)[None] / height), -1))
    return torch.cat(points, 1)[:, :, None]


def _level_inputs(shapes: Sequence[tuple[int, int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    spatial_shapes = torch.as_tensor(list(shapes), dtype=torch.long, device=device)
    start = torch.cat((spatial_shapes.new_zeros((1,)), spatial_shapes.prod(1).cumsum(0)[:-1]))
    return spatial_shapes, start


def adapter_level_shapes(height: int, width: int) -> list[tuple[int, int]]:
    """(h, w) of the adapter levels c2, c3, c4 for an input of height x width pixels."""
    return [(height // stride, width // stride) for stride in ADAPTER_STRIDES]


def deform_inputs(height: int, width: int, vit_h: int, vit_w: int, device: torch.device) -> tuple[DeformInputs, DeformInputs]:
    """Inputs of the injector (ViT-grid queries over the 3 adapter levels) and the extractor (adapter queries over the ViT grid)."""
    adapter_shapes = adapter_level_shapes(height, width)
    inject = DeformInputs(_reference_points([(vit_h, vit_w)], device), *_level_inputs(adapter_shapes, device))
    extract = DeformInputs(_reference_points(adapter_shapes, device), *_level_inputs([(vit_h, vit_w)], device))
    return inject, extract


def run_msda_fp32(
    attn: nn.Module, official_compat: bool, query: torch.Tensor, value: torch.Tensor, inputs: DeformInputs, **kwargs: torch.Tensor
) -> torch.Tensor:
    """Deformable attention in fp32 whatever the model dtype; the result is fp32.

    Default: autocast is off and, if the module was cast to lower precision, it runs on fp32 copies of
    its parameters (gradients still reach them). ``official_compat``: ``attn.float()`` as the official code.
    """
    call = dict(
        query=query.float(),
        value=value.float(),
        key_padding_mask=None,
        reference_points=inputs.reference_points.float(),
        spatial_shapes=inputs.spatial_shapes,
        level_start_index=inputs.level_start_index,
        **{name: tensor.float() for name, tensor in kwargs.items()},
    )
    if official_compat:
        attn.float()
        return attn(**call)
    with torch.autocast(device_type=query.device.type, enabled=False):
        params = dict(attn.named_parameters())
        if all(p.dtype == torch.float32 for p in params.values()):
            return attn(**call)
        return functional_call(attn, {name: p.float() for name, p in params.items()}, args=(), kwargs=call)


class Injector(nn.Module):
    """ViT tokens += gamma * MSDA(LN(ViT tokens) -> 3 adapter levels); gamma starts at ``init_values``."""

    def __init__(self, dim: int, num_heads: int, n_points: int, deform_ratio: float, init_values: float) -> None:
        super().__init__()
        self.query_norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = MultiScaleDeformableAttention(
            embed_dims=dim, num_heads=num_heads, num_levels=len(ADAPTER_STRIDES), num_points=n_points,
            dropout=0.0, batch_first=True, value_proj_ratio=deform_ratio,
        )  # fmt: skip
        self.gamma = nn.Parameter(init_values * torch.ones(dim))
        self.official_compat = False

    def forward(self, query: torch.Tensor, feat: torch.Tensor, inputs: DeformInputs) -> torch.Tensor:
        identity = torch.zeros_like(query, dtype=torch.float32)
        out = run_msda_fp32(self.attn, self.official_compat, self.query_norm(query), feat, inputs, identity=identity)
        return query + self.gamma * out.to(query.dtype)


class Extractor(nn.Module):
    """Adapter tokens = LN(adapter tokens + MSDA(adapter tokens -> LN(ViT tokens)))."""

    def __init__(self, dim: int, num_heads: int, n_points: int, deform_ratio: float, dropout: float = 0.0) -> None:
        super().__init__()
        self.query_norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.value_norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = MultiScaleDeformableAttention(
            embed_dims=dim, num_heads=num_heads, num_levels=1, num_points=n_points,
            dropout=dropout, batch_first=True, value_proj_ratio=deform_ratio,
        )  # fmt: skip
        self.official_compat = False

    def forward(self, query: torch.Tensor, feat: torch.Tensor, inputs: DeformInputs) -> torch.Tensor:
        out = run_msda_fp32(self.attn, self.official_compat, query, self.value_norm(feat), inputs)
        return self.query_norm(out.to(query.dtype))


def maybe_checkpoint(enabled: bool, function, *args):
    """Run ``function(*args)``, under non-reentrant activation checkpointing when ``enabled`` and training."""
    if enabled and torch.is_grad_enabled():
        return checkpoint(function, *args, use_reentrant=False)
    return function(*args)


class InteractionBlock(nn.Module):
    """Injector -> a group of SAM ViT blocks -> extractor -> VL fusion (+ extra extractor / fusion pairs)."""

    def __init__(
        self,
        dim: int,
        lang_dim: int,
        vl_dim: int,
        num_heads: int,
        n_points: int,
        deform_ratio: float,
        cffn_ratio: float,
        init_values: float,
        num_extra_layers: int = 0,
    ) -> None:
        super().__init__()
        self.injector = Injector(dim, num_heads, n_points, deform_ratio, init_values)
        self.extractor = Extractor(dim, num_heads, n_points, deform_ratio)
        self.vl_extractor = VLBiAttnLayer(dim, lang_dim, vl_dim, num_heads, len(ADAPTER_STRIDES), cffn_ratio)
        self.extra_extractors: nn.Sequential | None = None
        self.extra_vl_extractors: nn.Sequential | None = None
        if num_extra_layers > 0:
            self.extra_extractors = nn.Sequential(
                *[Extractor(dim, num_heads, n_points, deform_ratio) for _ in range(num_extra_layers)]
            )
            self.extra_vl_extractors = nn.Sequential(
                *[VLBiAttnLayer(dim, lang_dim, vl_dim, num_heads, len(ADAPTER_STRIDES), cffn_ratio) for _ in range(num_extra_layers)]
            )

    def forward(
        self,
        vit_feats: torch.Tensor,  # (B, h, w, D)
        adapter_feats: torch.Tensor,  # (B, Na, D)
        lvl_pos: torch.Tensor,  # (1|B, Na, D)
        lang: torch.Tensor,
        lang_mask: torch.Tensor,
        prompts: torch.Tensor,
        blocks: Sequence[nn.Module],
        inject: DeformInputs,
        extract: DeformInputs,
        level_sizes: Sequence[int],
        use_checkpoint: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, height, width, dim = vit_feats.shape
        vit_feats = self.injector(vit_feats.flatten(1, 2), adapter_feats, inject).reshape(batch, height, width, dim)
        for block in blocks:
            vit_feats = maybe_checkpoint(use_checkpoint, block, vit_feats)
        vit_tokens = vit_feats.flatten(1, 2)
        pairs = [(self.extractor, self.vl_extractor)]
        if self.extra_extractors is not None and self.extra_vl_extractors is not None:
            pairs += list(zip(self.extra_extractors, self.extra_vl_extractors))
        for extractor, fusion in pairs:
            adapter_feats = extractor(adapter_feats, vit_tokens, extract)
            adapter_feats, lang, prompts = maybe_checkpoint(
                use_checkpoint,
                lambda f, l, p, fusion=fusion: fusion(f, l, p, lang_mask, level_sizes, lvl_pos),
                adapter_feats, lang, prompts,
            )  # fmt: skip
        return vit_feats, adapter_feats, lang, prompts
