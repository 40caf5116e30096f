"""``ReferSAM``: referring image segmentation over the unmodified ``segment_anything`` SAM.

Top-level children and every key below them follow the official model (``text_encoder``,
``vl_adapter`` with ``vis_model`` = the SAM ViT, ``sam_prompt_encoder``, ``sam_mask_decoder``,
``mask_embedding``, ``mask_scaling``, ``sparse_embedding``), so official-layout state_dicts load
strictly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from samkit.referring.adapter import AdapterConfig, ViTAdapter
from samkit.referring.attention import init_linear_and_norm
from samkit.referring.decoder import decode_single_mask, dense_positional_encoding
from samkit.referring.text import is_clip, text_width

LAYER_NORM_EPS = 1e-6


class ReferSAM(nn.Module):
    """Text encoder -> VLI (SAM ViT + adapter + fusion) -> VLP prompts -> SAM prompt encoder / mask decoder.

    ``forward(images, input_ids, attention_mask)`` takes normalised images (B, 3, H, W) with H, W
    divisible by 32 and right-padded token ids / 0-1 masks (B, N), and returns
    ``(pred_logits (B, H, W), coarse_logits (B, 1, H/4, W/4))``. A CLIP text model is frozen (run
    without gradient, end-of-text token); any other (BERT-like) text model is trained (first token).
    """

    def __init__(
        self, sam: nn.Module, text_encoder: nn.Module, adapter_config: AdapterConfig, *, official_compat: bool = False
    ) -> None:
        super().__init__()
        self.sam_prompt_encoder = sam.prompt_encoder
        self.sam_mask_decoder = sam.mask_decoder
        self.text_encoder = text_encoder
        self.using_clip = is_clip(text_encoder.config)
        self.vl_adapter = ViTAdapter(sam.image_encoder, text_width(text_encoder), adapter_config, self.using_clip)
        dim = self.sam_mask_decoder.transformer_dim
        self.mask_embedding = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.mask_scaling = nn.Conv2d(1, 1, kernel_size=1)
        self.sparse_embedding = nn.Sequential(
            nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim), nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        )
        nn.init.ones_(self.mask_scaling.weight)
        nn.init.zeros_(self.mask_scaling.bias)
        self.mask_embedding.apply(init_linear_and_norm)
        self.sparse_embedding.apply(init_linear_and_norm)
        if self.using_clip:
            self.text_encoder.requires_grad_(False)
        self.official_compat = official_compat

    @property
    def official_compat(self) -> bool:
        return self._official_compat

    @official_compat.setter
    def official_compat(self, enabled: bool) -> None:
        self._official_compat = bool(enabled)
        self.vl_adapter.set_official_compat(self._official_compat)

    def set_activation_checkpointing(self, enabled: bool) -> None:
        """Recompute the ViT blocks and the fusion layers in the backward pass (less memory, more time)."""
        self.vl_adapter.use_checkpoint = bool(enabled)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Last hidden state (B, N, lang_dim); CLIP runs without gradient."""
        if self.using_clip:
            with torch.no_grad():
                return self.text_encoder(input_ids, attention_mask)[0]
        return self.text_encoder(input_ids, attention_mask)[0]

    def forward(
        self, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        lang = self.encode_text(input_ids, attention_mask)
        out = self.vl_adapter(images, lang, attention_mask)
        dense_token, sparse_tokens = out.prompts[:, :1], out.prompts[:, 1:]
        coarse = torch.einsum("bqc,bchw->bqhw", self.mask_embedding(dense_token), out.mask_feature)  # (B, 1, H/4, W/4)
        dense = self.sam_prompt_encoder._embed_masks(self.mask_scaling(coarse))  # (B, C, H/16, W/16)
        sparse = self.sparse_embedding(sparse_tokens)
        grid = out.image_embeddings.shape[-2:]
        dense_pe = dense_positional_encoding(self.sam_prompt_encoder, tuple(grid))
        low_res = decode_single_mask(
            self.sam_mask_decoder, out.image_embeddings, dense_pe, sparse.to(dense.dtype), dense
        )
        pred = F.interpolate(low_res.float(), size=images.shape[-2:], mode="bilinear", align_corners=True)
        return pred.squeeze(1), coarse.float()
