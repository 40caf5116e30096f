"""ReferSAM's vision-language fusion layer (VLI) and prompt layer (VLP), post-norm as in the official model."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from samkit.referring.attention import (
    FeedForward,
    MultiHeadAttention,
    MultiScaleAttention,
    add_pos,
    init_linear_and_norm,
)

LAYER_NORM_EPS = 1e-6
FUSION_GAMMA_INIT = 1.0
PROMPT_MLP_RATIO = 4


def _layer_norm(dim: int) -> nn.LayerNorm:
    return nn.LayerNorm(dim, eps=LAYER_NORM_EPS)


class VLBiAttnLayer(nn.Module):
    """One image-text fusion step over adapter tokens F, words L and context tokens C.

    Words and context form one prompt sequence P: self-attention on P, P attends to the three
    adapter levels (``l2v_cross_attn``), FFN; then F attends to P (``v2l_cross_attn``), FFN. Every
    residual is followed by its LayerNorm; the cross-attention branches are scaled by learned
    per-channel gammas (init 1).
    """

    def __init__(
        self, v_dim: int, l_dim: int, inner_dim: int, heads: int, n_levels: int = 3, mlp_ratio: float = 2.0
    ) -> None:
        super().__init__()
        self.l2v_cross_attn = MultiScaleAttention(l_dim, v_dim, inner_dim, heads, n_levels)
        self.p2l_cross_attn = MultiHeadAttention(l_dim, l_dim, inner_dim, heads)
        self.v2l_cross_attn = MultiHeadAttention(v_dim, l_dim, inner_dim, heads)
        self.prompt_mlp = FeedForward(l_dim, int(l_dim * mlp_ratio))
        self.vis_mlp = FeedForward(v_dim, int(v_dim * mlp_ratio))
        self.gamma_v2l = nn.Parameter(FUSION_GAMMA_INIT * torch.ones((1, 1, v_dim)))
        self.gamma_l2v = nn.Parameter(FUSION_GAMMA_INIT * torch.ones((1, 1, l_dim)))
        self.v_norm1 = _layer_norm(v_dim)
        self.v_norm2 = _layer_norm(v_dim)
        self.l_norm1 = _layer_norm(l_dim)
        self.l_norm2 = _layer_norm(l_dim)
        self.l_norm3 = _layer_norm(l_dim)
        self.apply(init_linear_and_norm)

    def forward(
        self,
        vis: torch.Tensor,  # (B, Na, Dv) adapter tokens
        lang: torch.Tensor,  # (B, Nl, Dl) words
        prompts: torch.Tensor,  # (B, Nc, Dl) context tokens
        lang_mask: torch.Tensor,  # (B, Nl), 1 = real token
        level_sizes: Sequence[int],
        vis_pos: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        text_length = lang.shape[1]
        seq = torch.cat([lang, prompts], dim=1)
        seq_mask = torch.cat([lang_mask, lang_mask.new_ones((lang.shape[0], prompts.shape[1]))], dim=1)
        seq = self.l_norm2(seq + self.p2l_cross_attn(seq, seq, seq, key_mask=seq_mask))
        seq = self.l_norm1(seq + self.l2v_cross_attn(seq, add_pos(vis, vis_pos), vis, level_sizes) * self.gamma_l2v)
        seq = self.l_norm3(seq + self.prompt_mlp(seq))
        vis = self.v_norm1(vis + self.v2l_cross_attn(add_pos(vis, vis_pos), seq, seq, key_mask=seq_mask) * self.gamma_v2l)
        vis = self.v_norm2(vis + self.vis_mlp(vis))
        return vis, seq[:, :text_length], seq[:, text_length:]


class PromptAttnLayer(nn.Module):
    """One VLP step over the prompt tokens T: self-attention, attention to the projected adapter levels,
    attention to the projected words, FFN (each followed by its LayerNorm)."""

    def __init__(self, dim: int, heads: int = 8, n_levels: int = 3) -> None:
        super().__init__()
        self.p2v_cross_attn = MultiScaleAttention(dim, dim, dim, heads, n_levels)
        self.p2l_cross_attn = MultiHeadAttention(dim, dim, dim, heads)
        self.p_self_attn = MultiHeadAttention(dim, dim, dim, heads)
        self.prompt_mlp = FeedForward(dim, dim * PROMPT_MLP_RATIO)
        self.norm1 = _layer_norm(dim)
        self.norm2 = _layer_norm(dim)
        self.norm3 = _layer_norm(dim)
        self.norm4 = _layer_norm(dim)
        self.apply(init_linear_and_norm)

    def forward(
        self,
        prompts: torch.Tensor,  # (B, 5, C)
        vis: torch.Tensor,  # (B, Na, C) projected adapter tokens
        lang: torch.Tensor,  # (B, Nl, C) projected words
        lang_mask: torch.Tensor,
        level_sizes: Sequence[int],
        prompt_pos: torch.Tensor,
        vis_pos: torch.Tensor,
    ) -> torch.Tensor:
        query = add_pos(prompts, prompt_pos)
        prompts = self.norm1(prompts + self.p_self_attn(query, query, prompts))
        prompts = self.norm2(
            prompts + self.p2v_cross_attn(add_pos(prompts, prompt_pos), add_pos(vis, vis_pos), vis, level_sizes)
        )
        prompts = self.norm3(prompts + self.p2l_cross_attn(add_pos(prompts, prompt_pos), lang, lang, key_mask=lang_mask))
        return self.norm4(prompts + self.prompt_mlp(prompts))
