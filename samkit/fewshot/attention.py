"""Support-calibrated memory attention (SCMA) run over sam2's own ``MemoryAttention`` modules.

Nothing here owns parameters: the functions call the q/k/v/out projections, norms and MLPs of
``sam2.modeling.memory_attention.MemoryAttention`` (so the state_dict keys stay sam2's) and replace
only the cross-attention arithmetic. The memory holds ``S`` support frames, the pseudo-query frame
and the object-pointer tokens, in that order (reference spec section 1.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from samkit.fewshot.prior import COS_EPS, minmax, weighted_gap

CALIBRATION_SCALE = 10.0
"""The bias on suppressed pseudo-query keys lies in [-10, 0]."""
INPUT_POS_SCALE = 0.1
"""sam2's MemoryAttention adds 0.1 * the query position encoding at its input."""


@dataclass(frozen=True)
class Calibration:
    """Which memory tokens SCMA treats as support and which as the pseudo-query memory.

    ``support_masks`` (B, S, h, w) are the support masks at the memory grid (nearest resize);
    the first ``S`` spatial memories are averaged into one support memory and the memory right
    after them is calibrated. Official 5-shot code: S = 1 with the first shot's mask, so the second
    support memory is calibrated instead of the pseudo-query memory (spec section 1.9).
    """

    support_masks: torch.Tensor
    num_pointer_tokens: int


class RopeCache:
    """RoPE frequencies per (attention module, grid, device), computed with the module's own ``compute_cis``."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, int, str], torch.Tensor] = {}

    def get(self, attention: nn.Module, tokens: int, device: torch.device) -> torch.Tensor:
        key = (id(attention), tokens, str(device))
        if key not in self._cache:
            side = math.isqrt(tokens)
            self._cache[key] = attention.compute_cis(end_x=side, end_y=side).to(device)
        return self._cache[key]


def calibrated_cross_attention(
    attention: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
    calibration: Calibration, freqs_cis: torch.Tensor,
) -> torch.Tensor:
    """SCMA through a sam2 ``RoPEAttention``: (B, N, C) queries, (B, M, Ck) keys / values -> (B, N, C)."""
    from sam2.modeling.position_encoding import apply_rotary_enc

    q = attention._separate_heads(attention.q_proj(query), attention.num_heads)  # (B, h, N, d)
    k = attention._separate_heads(attention.k_proj(key), attention.num_heads)  # (B, h, M, d)
    v = attention._separate_heads(attention.v_proj(value), attention.num_heads)
    batch, heads, pixels, _ = q.shape
    num_rope = k.shape[-2] - calibration.num_pointer_tokens
    q, k_rope = apply_rotary_enc(q, k[:, :, :num_rope], freqs_cis=freqs_cis, repeat_freqs_k=attention.rope_k_repeat)
    k = torch.cat((k_rope, k[:, :, num_rope:]), dim=-2)

    masks = calibration.support_masks  # (B, S, h, w)
    shots, side = masks.shape[1], masks.shape[-1]
    k_pseudo = k[:, :, shots * pixels:(shots + 1) * pixels]  # (B, h, N, d)
    k_pseudo_norm = k_pseudo.norm(p=2, dim=-1, keepdim=True)
    similarities = []
    for shot in range(shots):
        k_support = k[:, :, shot * pixels:(shot + 1) * pixels].transpose(-2, -1)  # (B, h, d, N)
        k_support = k_support.reshape(batch * heads, -1, side, side)
        mask = masks[:, shot, None, None].expand(-1, heads, -1, -1, -1).reshape(batch * heads, 1, side, side)
        proto = weighted_gap(k_support, mask).view(batch, heads, 1, -1)  # (B, h, 1, d)
        proto_norm = proto.norm(p=2, dim=-1, keepdim=True)
        cos = (proto @ k_pseudo.transpose(-2, -1)) / (proto_norm @ k_pseudo_norm.transpose(-2, -1) + COS_EPS)
        similarities.append(minmax(cos))  # (B, h, 1, N)
    similarity = torch.cat(similarities, dim=2).mean(dim=2, keepdim=True)

    k = torch.cat((k[:, :, :shots * pixels].view(batch, heads, shots, pixels, -1).mean(dim=2),
                   k[:, :, shots * pixels:]), dim=-2)
    v = torch.cat((v[:, :, :shots * pixels].view(batch, heads, shots, pixels, -1).mean(dim=2),
                   v[:, :, shots * pixels:]), dim=-2)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (B, h, N, N + N + M')
    to_support, to_pseudo, to_rest = scores[..., :pixels], scores[..., pixels:2 * pixels], scores[..., 2 * pixels:]
    agreement = minmax(to_pseudo) + (similarity - 1.0)
    bias = agreement.detach().clamp(max=0.0) * CALIBRATION_SCALE
    weights = torch.softmax(torch.cat((to_support, to_pseudo + bias, to_rest), dim=-1), dim=-1)
    weights = torch.dropout(weights, attention.dropout_p if attention.training else 0.0, train=True)
    return attention.out_proj(attention._recombine_heads(weights @ v))


def calibrated_memory_attention(
    memory_attention: nn.Module, current: torch.Tensor, current_pos: torch.Tensor,
    memory: torch.Tensor, memory_pos: torch.Tensor, calibration: Calibration, rope: RopeCache,
) -> torch.Tensor:
    """sam2 ``MemoryAttention.forward`` with SCMA in every cross-attention; sequence-first (N, B, C) in and out."""
    output = current + INPUT_POS_SCALE * current_pos if memory_attention.pos_enc_at_input else current
    output, memory, memory_pos = output.transpose(0, 1), memory.transpose(0, 1), memory_pos.transpose(0, 1)
    keys = memory + memory_pos
    for layer in memory_attention.layers:
        output = layer._forward_sa(output, None)
        cross = layer.cross_attn_image
        freqs = rope.get(cross, output.shape[1], output.device)
        attended = calibrated_cross_attention(
            cross, layer.norm2(output), keys if layer.pos_enc_at_cross_attn_keys else memory, memory,
            calibration, freqs,
        )
        output = output + layer.dropout2(attended)
        hidden = layer.linear2(layer.dropout(layer.activation(layer.linear1(layer.norm3(output)))))
        output = output + layer.dropout3(hidden)
    return memory_attention.norm(output).transpose(0, 1)
