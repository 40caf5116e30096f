"""Dense attention blocks of the ReferSAM fusion layers and the sine positional encoding.

Attribute names follow the official model so that its state_dict keys load unchanged
(``q_proj``/``k_proj``/``v_proj``/``out_proj``, ``level_weights``, ``fc1``/``fc2``). The arithmetic
order is the official one (the query is scaled after its projection, masked keys get ``-inf``,
multi-scale attention takes one softmax per level and mixes the levels with per-query, per-head
weights) so outputs match bit for bit on CPU in fp32.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

LINEAR_INIT_STD = 0.02
SINE_TEMPERATURE = 10000.0
SINE_EPS = 1e-6


def init_linear_and_norm(module: nn.Module) -> None:
    """Truncated-normal (std 0.02) Linear weights with zero bias; LayerNorm to 1 / 0 (official init)."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=LINEAR_INIT_STD)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def add_pos(feats: torch.Tensor, pos: torch.Tensor | None) -> torch.Tensor:
    return feats if pos is None else feats + pos


class FeedForward(nn.Module):
    """Linear -> GELU -> dropout -> Linear."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(self.act(self.fc1(x))))


def _masked(weights: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
    """Set the logits of padded keys (``key_mask == 0``, shape (B, S)) to -inf; weights (B, heads, T, S)."""
    if key_mask is None:
        return weights
    return weights.masked_fill(key_mask[:, None, None, :] == 0, float("-inf"))


class MultiHeadAttention(nn.Module):
    """Multi-head attention between a query of width ``q_dim`` and keys/values of width ``k_dim``."""

    def __init__(self, q_dim: int, k_dim: int, embed_dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.embed_dim = embed_dim
        self.scale = self.head_dim**-0.5
        self.q_proj = nn.Linear(q_dim, embed_dim)
        self.k_proj = nn.Linear(k_dim, embed_dim)
        self.v_proj = nn.Linear(k_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, q_dim)
        self.dropout = nn.Dropout(dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape  # (B, L, E) -> (B, heads, L, head_dim)
        return x.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2).contiguous()

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        batch, tgt_len, _ = q.shape
        query = self._heads(self.q_proj(q) * self.scale).flatten(0, 1)  # (B*heads, T, d)
        key = self._heads(self.k_proj(k)).flatten(0, 1)
        value = self._heads(self.v_proj(v)).flatten(0, 1)
        weights = torch.bmm(query, key.transpose(1, 2))  # (B*heads, T, S)
        if key_mask is not None:
            weights = _masked(weights.view(batch, self.num_heads, tgt_len, -1), key_mask).flatten(0, 1)
        weights = self.dropout(weights.softmax(dim=-1))
        out = torch.bmm(weights, value).view(batch, self.num_heads, tgt_len, self.head_dim)
        return self.out_proj(out.transpose(1, 2).reshape(batch, tgt_len, self.embed_dim))


class MultiScaleAttention(MultiHeadAttention):
    """Attention over several flattened feature levels: a softmax per level, levels mixed by learned weights.

    ``level_weights`` (Linear q_dim -> heads * levels) is computed from the raw query and softmaxed over
    the levels, per query and head.
    """

    def __init__(
        self, q_dim: int, k_dim: int, embed_dim: int, num_heads: int, num_levels: int, dropout: float = 0.0
    ) -> None:
        super().__init__(q_dim, k_dim, embed_dim, num_heads, dropout)
        self.num_levels = num_levels
        self.level_weights = nn.Linear(q_dim, num_heads * num_levels)

    def forward(  # type: ignore[override]
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        level_sizes: Sequence[int],
        key_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        batch, tgt_len, _ = q.shape
        mix = self.level_weights(q)
        query = self._heads(self.q_proj(q) * self.scale)  # (B, heads, T, d)
        key = self._heads(self.k_proj(k))
        value = self._heads(self.v_proj(v))
        weights = _masked(torch.matmul(query, key.transpose(2, 3)), key_mask)  # (B, heads, T, S)
        mix = mix.reshape(batch, tgt_len, self.num_heads, 1, self.num_levels).transpose(1, 2).softmax(-1)
        per_level = weights.split(list(level_sizes), dim=-1)
        weights = torch.cat([per_level[i].softmax(dim=-1) * mix[..., i] for i in range(self.num_levels)], dim=-1)
        out = torch.matmul(self.dropout(weights), value)  # (B, heads, T, d)
        return self.out_proj(out.transpose(1, 2).reshape(batch, tgt_len, self.embed_dim))


class SinePositionalEncoding(nn.Module):
    """Normalised 2-D sine/cosine encoding (DETR / mmdet ``SinePositionalEncoding(normalize=True)``).

    No parameters. Returns (1, 2 * num_feats, h, w): the y half first, then the x half, each with
    sin / cos interleaved.
    """

    def __init__(self, num_feats: int) -> None:
        super().__init__()
        self.num_feats = num_feats

    def forward(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        ones = torch.ones((1, height, width), dtype=torch.int32, device=device)
        y_embed = ones.cumsum(1, dtype=torch.float32)
        x_embed = ones.cumsum(2, dtype=torch.float32)
        scale = 2 * math.pi
        y_embed = y_embed / (y_embed[:, -1:, :] + SINE_EPS) * scale
        x_embed = x_embed / (x_embed[:, :, -1:] + SINE_EPS) * scale
        dim_t = torch.arange(self.num_feats, dtype=torch.float32, device=device)
        dim_t = SINE_TEMPERATURE ** (2 * (dim_t // 2) / self.num_feats)
        pos_x = x_embed[..., None] / dim_t
        pos_y = y_embed[..., None] / dim_t
        pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).view(1, height, width, -1)
        pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).view(1, height, width, -1)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)
