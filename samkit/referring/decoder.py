"""Batched SAM mask decoding: B image embeddings with B prompt sets, over pip ``segment_anything`` modules.

``MaskDecoder.predict_masks`` in ``segment-anything==1.0`` repeats one image embedding for every
prompt set, so B images with B prompt sets fail. This function runs the same submodules
(``transformer``, ``output_upscaling``, ``output_hypernetworks_mlps``) in the same order with the
image batch kept as is, and returns the first mask (``multimask_output=False``). All mask tokens go
through one matrix product, as upstream, so the result is bitwise the official one.
"""

from __future__ import annotations

import torch
from torch import nn


def decode_single_mask(
    mask_decoder: nn.Module,
    image_embeddings: torch.Tensor,  # (B, C, h, w)
    image_pe: torch.Tensor,  # (1, C, h, w)
    sparse_prompt_embeddings: torch.Tensor,  # (B, N, C)
    dense_prompt_embeddings: torch.Tensor,  # (B, C, h, w)
) -> torch.Tensor:
    """Low-resolution mask logits of mask token 0: (B, 1, 4h, 4w). The IoU head is not run (its output is unused)."""
    batch = sparse_prompt_embeddings.shape[0]
    output_tokens = torch.cat([mask_decoder.iou_token.weight, mask_decoder.mask_tokens.weight], dim=0)
    tokens = torch.cat((output_tokens.unsqueeze(0).expand(batch, -1, -1), sparse_prompt_embeddings), dim=1)
    src = image_embeddings + dense_prompt_embeddings
    pos_src = torch.repeat_interleave(image_pe, batch, dim=0)
    _, channels, height, width = src.shape
    hidden, src = mask_decoder.transformer(src, pos_src, tokens)
    mask_tokens = hidden[:, 1 : 1 + mask_decoder.num_mask_tokens, :]  # after the IoU token
    upscaled = mask_decoder.output_upscaling(src.transpose(1, 2).view(batch, channels, height, width))
    hyper = torch.stack(
        [mlp(mask_tokens[:, i, :]) for i, mlp in enumerate(mask_decoder.output_hypernetworks_mlps)], dim=1
    )  # (B, num_mask_tokens, C/8)
    b, c, h, w = upscaled.shape
    return (hyper @ upscaled.view(b, c, h * w)).view(b, -1, h, w)[:, :1]


def dense_positional_encoding(prompt_encoder: nn.Module, grid: tuple[int, int]) -> torch.Tensor:
    """SAM's random-Fourier encoding of an h x w grid, (1, C, h, w), for any grid size and model dtype.

    The same ops as ``PositionEmbeddingRandom.forward`` in fp32 (so fp32 results are identical); pip's
    version fails once the model is cast to bf16 / fp16, so the Gaussian matrix is up-cast here and the
    result cast back.
    """
    import math

    gaussian = prompt_encoder.pe_layer.positional_encoding_gaussian_matrix
    height, width = grid
    ones = torch.ones((height, width), device=gaussian.device, dtype=torch.float32)
    y_embed = (ones.cumsum(dim=0) - 0.5) / height
    x_embed = (ones.cumsum(dim=1) - 0.5) / width
    coords = 2 * torch.stack([x_embed, y_embed], dim=-1) - 1
    coords = 2 * math.pi * (coords @ gaussian.float())
    return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1).permute(2, 0, 1).unsqueeze(0).to(gaussian.dtype)
