"""``vl_adapter``: the SAM ViT run block group by block group, interleaved with the VLI, then the VLP.

The ViT is the unmodified ``segment_anything`` ``ImageEncoderViT`` (kept as ``vis_model``); only its
``patch_embed``, ``pos_embed``, ``blocks`` and ``neck`` are used, never its ``forward``, so any input
size divisible by 32 works (the absolute position embedding is resized bilinearly).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from samkit.referring.attention import SinePositionalEncoding, init_linear_and_norm
from samkit.referring.fusion import LAYER_NORM_EPS, PromptAttnLayer
from samkit.referring.interaction import (
    ADAPTER_STRIDES,
    InteractionBlock,
    SpatialPriorModule,
    adapter_level_shapes,
    deform_inputs,
)
from samkit.referring.msda import MultiScaleDeformableAttention

PROMPT_HEADS = 8
MIN_INPUT_MULTIPLE = 32
"""Inputs must be divisible by the coarsest adapter stride."""


@dataclass(frozen=True)
class AdapterConfig:
    """The VLI / VLP hyperparameters (official values in ``samkit.referring.config``)."""

    interaction_indexes: tuple[tuple[int, int], ...]
    num_heads: int
    vl_dim: int
    conv_inplane: int = 64
    n_points: int = 4
    deform_ratio: float = 0.5
    cffn_ratio: float = 2.0
    init_values: float = 1e-6
    num_context_prompts: int = 16
    num_sparse_prompts: int = 4
    num_extra_layers: int = 2
    num_prompt_layers: int = 2


@dataclass
class AdapterOutput:
    mask_feature: torch.Tensor  # (B, C, H/4, W/4)
    image_embeddings: torch.Tensor  # (B, C, H/16, W/16) = neck(ViT) + c3
    prompts: torch.Tensor  # (B, 1 + sparse, C): dense token then sparse tokens


def init_conv_norm_linear(module: nn.Module) -> None:
    """Official adapter init: Linear / LayerNorm as the fusion layers, GroupNorm 1 / 0, conv N(0, sqrt(2 / fan_out))."""
    init_linear_and_norm(module)
    if isinstance(module, nn.GroupNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        module.weight.data.normal_(0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            module.bias.data.zero_()


class ViTAdapter(nn.Module):
    """SAM ViT + spatial prior + interaction blocks + mask feature + prompt layers."""

    def __init__(self, vis_model: nn.Module, lang_dim: int, config: AdapterConfig, use_eos_token: bool) -> None:
        super().__init__()
        embed_dim = vis_model.patch_embed.proj.out_channels
        out_dim = vis_model.neck[0].out_channels
        depth = len(vis_model.blocks)
        if config.interaction_indexes[-1][1] != depth - 1:
            raise ValueError(f"interaction_indexes {config.interaction_indexes} must end at the last ViT block {depth - 1}")
        self.config = config
        self.use_eos_token = use_eos_token
        self.use_checkpoint = False
        self.vis_model = vis_model
        self.level_embed = nn.Parameter(torch.zeros(len(ADAPTER_STRIDES), embed_dim))
        self.postional_encoding = SinePositionalEncoding(embed_dim // 2)  # official spelling
        self.spm = SpatialPriorModule(config.conv_inplane, embed_dim)
        self.lang_prompts = nn.Embedding(config.num_context_prompts, lang_dim)
        last = len(config.interaction_indexes) - 1
        self.interactions = nn.Sequential(*[
            InteractionBlock(
                embed_dim, lang_dim, config.vl_dim, config.num_heads, config.n_points, config.deform_ratio,
                config.cffn_ratio, config.init_values, config.num_extra_layers if i == last else 0,
            )
            for i in range(len(config.interaction_indexes))
        ])  # fmt: skip
        self.adapter_proj = nn.ModuleList(
            [nn.Sequential(nn.Linear(embed_dim, out_dim), nn.LayerNorm(out_dim, eps=LAYER_NORM_EPS)) for _ in ADAPTER_STRIDES]
        )
        self.lang_proj = nn.Sequential(
            nn.Linear(lang_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim), nn.LayerNorm(out_dim, eps=LAYER_NORM_EPS)
        )
        self.sparse_prompts = nn.Embedding(config.num_sparse_prompts, out_dim)
        self.prompt_pos = nn.Embedding(1 + config.num_sparse_prompts, out_dim)
        self.level_embed_prompter = nn.Parameter(torch.zeros(len(ADAPTER_STRIDES), out_dim))
        self.postional_encoding_prompter = SinePositionalEncoding(out_dim // 2)
        self.prompt_blocks = nn.Sequential(
            *[PromptAttnLayer(out_dim, PROMPT_HEADS, len(ADAPTER_STRIDES)) for _ in range(config.num_prompt_layers)]
        )
        self.c1_conv = nn.Conv2d(config.conv_inplane, out_dim, kernel_size=1, bias=False)
        self.c1_norm = nn.GroupNorm(1, out_dim, eps=LAYER_NORM_EPS)
        self.out_conv = nn.Sequential(
            nn.Conv2d(out_dim, out_dim, kernel_size=3, padding=1, bias=False),
            nn.GroupNorm(1, out_dim, eps=LAYER_NORM_EPS),
            nn.GELU(),
            nn.Conv2d(out_dim, out_dim, kernel_size=1),
        )
        for part in (self.c1_conv, self.c1_norm, self.out_conv, self.spm, self.interactions, self.prompt_blocks,
                     self.adapter_proj, self.lang_proj):  # fmt: skip
            part.apply(init_conv_norm_linear)
        for module in self.modules():
            if isinstance(module, MultiScaleDeformableAttention):
                module.init_weights()
        nn.init.normal_(self.level_embed)
        nn.init.normal_(self.level_embed_prompter)

    def set_official_compat(self, enabled: bool) -> None:
        """Official mode: ``attn.float()`` mutation and mmcv's own deformable-attention formulation
        (``"reference"``, bitwise mmcv's CPU path); default: fp32 without mutation and the fastest exact one."""
        for module in self.interactions.modules():
            if hasattr(module, "official_compat"):
                module.official_compat = enabled
            if isinstance(module, MultiScaleDeformableAttention):
                module.method = "reference" if enabled else "auto"

    def _level_pos(self, encoding: SinePositionalEncoding, level_embed: torch.Tensor, shapes, device) -> torch.Tensor:
        """(1, sum h*w, C): level embedding + sine encoding, for each adapter level."""
        parts = []
        for i, (height, width) in enumerate(shapes):
            pos = encoding(height, width, device).to(level_embed.dtype)
            parts.append(level_embed[i] + pos.flatten(2).permute(0, 2, 1))
        return torch.cat(parts, dim=1)

    def _embed_patches(self, x: torch.Tensor) -> torch.Tensor:
        vit = self.vis_model.patch_embed(x)  # (B, h, w, D)
        pos_embed = self.vis_model.pos_embed
        if pos_embed is not None:
            resized = F.interpolate(pos_embed.float().permute(0, 3, 1, 2), size=vit.shape[1:3], mode="bilinear")
            vit = vit + resized.to(vit.dtype).permute(0, 2, 3, 1).contiguous()
        return vit

    def forward(self, x: torch.Tensor, lang: torch.Tensor, lang_mask: torch.Tensor) -> AdapterOutput:
        height, width = x.shape[-2:]
        if height % MIN_INPUT_MULTIPLE or width % MIN_INPUT_MULTIPLE:
            raise ValueError(f"input size {height}x{width} must be divisible by {MIN_INPUT_MULTIPLE}")
        vit = self._embed_patches(x)
        batch, vit_h, vit_w, _ = vit.shape
        c1, c2, c3, c4 = self.spm(x)
        sizes = [c2.shape[1], c3.shape[1], c4.shape[1]]
        adapter = torch.cat([c2, c3, c4], dim=1)  # (B, Na, D)
        shapes = adapter_level_shapes(height, width)
        lvl_pos = self._level_pos(self.postional_encoding, self.level_embed, shapes, x.device)
        inject, extract = deform_inputs(height, width, vit_h, vit_w, x.device)
        prompts = self.lang_prompts.weight.unsqueeze(0).expand(batch, -1, -1)
        for (first, last), block in zip(self.config.interaction_indexes, self.interactions):
            vit, adapter, lang, prompts = block(
                vit, adapter, lvl_pos, lang, lang_mask, prompts, self.vis_model.blocks[first : last + 1],
                inject, extract, sizes, self.use_checkpoint,
            )  # fmt: skip
        lang = self.lang_proj(lang)
        levels = [proj(part) for proj, part in zip(self.adapter_proj, adapter.split(sizes, dim=1))]
        adapter = torch.cat(levels, dim=1)
        maps = [level.transpose(1, 2).reshape(batch, -1, h, w).contiguous() for level, (h, w) in zip(levels, shapes)]
        c1 = self.c1_norm(self.c1_conv(c1))
        c1 = c1 + F.interpolate(maps[0].float(), size=c1.shape[-2:], mode="bilinear", align_corners=False).to(c1.dtype)
        mask_feature = self.out_conv(c1)

        if self.use_eos_token:
            sentence = lang[torch.arange(batch, device=lang.device), lang_mask.sum(1).long() - 1].unsqueeze(1)
        else:
            sentence = lang[:, :1]
        tokens = torch.cat([sentence.clone().detach(), self.sparse_prompts.weight.unsqueeze(0).expand(batch, -1, -1)], 1)
        prompt_pos = self.prompt_pos.weight.unsqueeze(0)
        vis_pos = self._level_pos(self.postional_encoding_prompter, self.level_embed_prompter, shapes, x.device)
        for layer in self.prompt_blocks:
            tokens = layer(tokens, adapter, lang, lang_mask, sizes, prompt_pos, vis_pos)
        image_embeddings = self.vis_model.neck(vit.permute(0, 3, 1, 2)) + maps[1]
        return AdapterOutput(mask_feature=mask_feature, image_embeddings=image_embeddings, prompts=tokens)

