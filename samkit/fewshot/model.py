"""``FSSAM``: few-shot segmentation with SAM 2 (ICML'25) as a plug-in over unmodified ``sam2``'s ``SAM2Base``.

The module has exactly two children, ``sam2`` (a ``SAM2Base`` built from a SAM 2.0 config at 512 px)
and ``dino`` (DINOv2 ViT-B/14 under torch.hub names), so official checkpoints load strictly. An
episode is split into support encoding (:meth:`FSSAM.encode_support`: DINOv2 features and SAM 2
memories of the K shots) and query decoding (:meth:`FSSAM.segment`), so one support set can serve
many queries. ``forward`` chains the two with the official input conventions.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from samkit.fewshot.attention import Calibration, RopeCache, calibrated_memory_attention
from samkit.fewshot.dino import IMAGENET_MEAN, IMAGENET_STD, PIXEL_SCALE, DinoV2, dino_input
from samkit.fewshot.prior import pseudo_prompt_priors, refine_memory, resize_aligned, support_similarity

IGNORE_LABEL = 255
"""Support-mask value for "ignore"; FSSAM treats it as background."""
NUM_REFINE = 3
"""IMR iterations used for every released model (``--num_refine=3``)."""
TRAINED_MODULES = ("sam_mask_decoder", "memory_encoder", "memory_attention")
"""The ``sam2`` children the official recipe optimises (AdamW, lr 1e-3); everything else is frozen."""
FROZEN_MODULES = ("image_encoder", "sam_prompt_encoder", "obj_ptr_proj", "mask_downsample")
DINO_SIZE = 560
"""DINOv2 input side of the official model (40 x 40 patches), whatever the SAM 2 input size."""


@dataclass
class SupportEncoding:
    """Everything the query side needs from K support shots (batch B, or 1 to share with any batch).

    ``dino_feats`` (B, K, D, g, g); ``masks`` (B, K, 1, S, S) in {0, 1} at the input size;
    ``memory`` (B, K, 64, h, w) SAM 2 mask memories, ``memory_pos`` (B, K, 64, h, w) their sine
    position encoding; ``pointers`` (B, K, 256) object pointers.
    """

    dino_feats: torch.Tensor
    masks: torch.Tensor
    memory: torch.Tensor
    memory_pos: torch.Tensor
    pointers: torch.Tensor

    @property
    def shots(self) -> int:
        return self.masks.shape[1]

    def expand(self, batch: int) -> SupportEncoding:
        """Broadcast a batch-1 encoding to ``batch`` queries (views, no copies)."""
        if self.masks.shape[0] == batch:
            return self
        return SupportEncoding(*(t.expand(batch, *t.shape[1:]) for t in (
            self.dino_feats, self.masks, self.memory, self.memory_pos, self.pointers)))


@dataclass
class QueryFeatures:
    """SAM 2 backbone features of the query (sequence-first, as sam2 keeps them) and its DINOv2 map."""

    vision_feats: list[torch.Tensor]
    vision_pos: list[torch.Tensor]
    sizes: list[tuple[int, int]]
    dino_feats: torch.Tensor | None


class FSSAM(nn.Module):
    """FSSAM over ``sam2`` + DINOv2. ``official_compat=True`` reproduces the official 5-shot SCMA slice."""

    def __init__(self, sam2: nn.Module, dino: DinoV2, *, official_compat: bool = False,
                 num_refine: int = NUM_REFINE, dino_size: int = DINO_SIZE) -> None:
        super().__init__()
        self.sam2 = sam2
        self.dino = dino
        self.official_compat = official_compat
        self.num_refine = num_refine
        self.dino_size = dino_size
        self._rope = RopeCache()

    @property
    def image_size(self) -> int:
        return int(self.sam2.image_size)

    def trained_parameters(self) -> list[nn.Parameter]:
        """Parameters of the mask decoder, memory encoder and memory attention (the optimiser's groups)."""
        return [p for name in TRAINED_MODULES for p in getattr(self.sam2, name).parameters()]

    def freeze(self) -> FSSAM:
        """``requires_grad=False`` on the frozen parts (Hiera, prompt encoder, pointer MLP, mask downsampler, DINOv2)."""
        for module in [getattr(self.sam2, name) for name in FROZEN_MODULES] + [self.dino]:
            module.requires_grad_(False)
        return self

    def _autocast(self, device: torch.device):
        if device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    # ---- encoders -------------------------------------------------------------------------------------

    def _sam_input(self, images: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
        return (images / PIXEL_SCALE - mean) / std

    def _backbone(self, images: torch.Tensor) -> tuple[list, list, list]:
        """Frozen Hiera + FPN (no grad): sequence-first features, position encodings and sizes."""
        with torch.no_grad():
            out = self.sam2.forward_image(self._sam_input(images))
            _, feats, pos, sizes = self.sam2._prepare_backbone_features(out)
        return feats, pos, sizes

    def _dino(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.dino.last_features(dino_input(images, self.dino_size))

    def _mask_memory(self, feats: list, sizes: list, masks: torch.Tensor):
        """SAM 2 treatment of a user mask on a conditioning frame: (memory, pos, pointer)."""
        high_res = [x.permute(1, 2, 0).reshape(x.shape[1], x.shape[2], *s) for x, s in zip(feats[:-1], sizes[:-1])]
        pix = feats[-1].permute(1, 2, 0).reshape(-1, self.sam2.hidden_dim, *sizes[-1])
        out = self.sam2._use_mask_as_output(pix, high_res, masks)
        high_res_masks, pointer, object_scores = out[4], out[5], out[6]
        memory, pos = self.sam2._encode_new_memory(feats, sizes, high_res_masks, object_scores, False)
        return memory, pos[-1], pointer

    def encode_support(self, support_images: torch.Tensor, support_masks: torch.Tensor,
                       with_dino: bool = True) -> SupportEncoding:
        """(B, K, 3, S, S) 0-255 images, (B, K, S, S) masks (1 object, 0 background, 255 ignore) -> encoding."""
        batch, shots = support_images.shape[:2]
        size = support_images.shape[-2:]
        with self._autocast(support_images.device):
            masks = support_masks.float().masked_fill(support_masks == IGNORE_LABEL, 0.0).reshape(-1, 1, *size)
            images = support_images.reshape(-1, 3, *size).float()
            dino = self._dino(images) if with_dino else images.new_zeros(batch * shots, 1, 1, 1)
            feats, _, sizes = self._backbone(images)
            memory, pos, pointer = self._mask_memory(feats, sizes, masks)
        return SupportEncoding(
            dino_feats=dino.reshape(batch, shots, *dino.shape[1:]),
            masks=masks.reshape(batch, shots, 1, *size),
            memory=memory.reshape(batch, shots, *memory.shape[1:]),
            memory_pos=pos.reshape(batch, shots, *pos.shape[1:]),
            pointers=pointer.reshape(batch, shots, -1),
        )

    def encode_query(self, query: torch.Tensor, with_dino: bool = True) -> QueryFeatures:
        """(B, 3, S, S) 0-255 images -> backbone features (and the DINOv2 map unless priors are given)."""
        with self._autocast(query.device):
            query = query.float()
            feats, pos, sizes = self._backbone(query)
            dino = self._dino(query) if with_dino else None
        return QueryFeatures(feats, pos, sizes, dino)

    # ---- episode --------------------------------------------------------------------------------------

    def priors(self, query: QueryFeatures, support: SupportEncoding) -> torch.Tensor:
        """Per-shot DINOv2 priors (B, K, 2, S, S): channel 0 the FG prior, 1 the FG-BG contrast prior."""
        size = tuple(support.masks.shape[-2:])
        with torch.no_grad():
            fg, contrast = pseudo_prompt_priors(query.dino_feats, support.dino_feats, support.masks, size)
        return torch.stack((fg, contrast), dim=2)

    def segment(self, query: QueryFeatures, support: SupportEncoding,
                priors: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, S, S) of the query given an encoded support; ``priors`` (B, K, 2, S, S) skip DINOv2."""
        batch = query.vision_feats[-1].shape[1]
        support = support.expand(batch)
        device = query.vision_feats[-1].device
        with self._autocast(device):
            if priors is None:
                priors = self.priors(query, support)
            priors = priors.float().mean(dim=1)  # (B, 2, S, S)
            prior_fg, prior_ae = priors[:, :1], priors[:, 1:]
            # both pseudo prompts in one pass: (2B, ...) = [FG prior memories; contrast prior memories]
            twice = [torch.cat((x, x), dim=1) for x in query.vision_feats]
            memories, positions, pointers = self._mask_memory(twice, query.sizes, torch.cat((prior_fg, prior_ae)))
            fg_mem, ae_mem = memories[:batch], memories[batch:]
            ae_pos, ae_ptr = positions[batch:], pointers[batch:]
            grid = tuple(query.sizes[-1])
            shots = support.shots
            support_masks = resize_aligned(support.masks.flatten(0, 1), grid).view(batch, shots, 1, *grid)
            support_sim = support_similarity(fg_mem, support.memory, support_masks)
            ae_mem = refine_memory(fg_mem, ae_mem, resize_aligned(prior_fg, grid), resize_aligned(prior_ae, grid),
                                   support_sim, self.num_refine)
            memory, memory_pos, num_pointer_tokens = self._memory_bank(support, ae_mem, ae_pos, ae_ptr)
            calibration = Calibration(self._calibration_masks(support.masks, grid), num_pointer_tokens)
            fused = calibrated_memory_attention(
                self.sam2.memory_attention, query.vision_feats[-1], query.vision_pos[-1],
                memory, memory_pos, calibration, self._rope,
            )
            fused = fused.permute(1, 2, 0).reshape(batch, self.sam2.hidden_dim, *grid)
            return self._decode(fused, query)

    def _calibration_masks(self, masks: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """(B, S', h, w) nearest-resized support masks for SCMA; the official code passes only the first shot."""
        if self.official_compat:
            masks = masks[:, :1]
        return F.interpolate(masks.flatten(0, 1), size=grid, mode="nearest").view(masks.shape[0], -1, *grid)

    def _memory_bank(self, support: SupportEncoding, ae_mem: torch.Tensor, ae_pos: torch.Tensor,
                     ae_ptr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Memory tokens / positions (sequence-first): K support frames, the pseudo-query frame, K+1 pointers.

        Every frame is a conditioning frame at temporal distance 0 (``maskmem_tpos_enc[num_maskmem - 1]``);
        each 256-d pointer is split into 256 / 64 tokens with zero position encoding.
        """
        sam = self.sam2
        frames = torch.cat((support.memory, ae_mem.unsqueeze(1)), dim=1)  # (B, K+1, 64, h, w)
        frame_pos = torch.cat((support.memory_pos, ae_pos.unsqueeze(1)), dim=1)
        batch, count, channels = frames.shape[:3]
        tpos = sam.maskmem_tpos_enc[sam.num_maskmem - 1]  # (1, 1, 64)
        memory = frames.flatten(3).permute(1, 3, 0, 2).reshape(-1, batch, channels)  # (K+1)*hw, B, 64
        memory_pos = frame_pos.flatten(3).permute(1, 3, 0, 2).reshape(-1, batch, channels) + tpos
        pointers = torch.cat((support.pointers, ae_ptr.unsqueeze(1)), dim=1).transpose(0, 1)  # (K+1, B, 256)
        split = sam.hidden_dim // sam.mem_dim
        pointers = pointers.reshape(count, batch, split, sam.mem_dim).permute(0, 2, 1, 3).flatten(0, 1)
        memory = torch.cat((memory, pointers.to(memory.dtype)), dim=0)
        memory_pos = torch.cat((memory_pos, memory_pos.new_zeros(pointers.shape)), dim=0)
        return memory, memory_pos, pointers.shape[0]

    def _decode(self, pix_feat: torch.Tensor, query: QueryFeatures) -> torch.Tensor:
        """SAM 2 heads without a prompt, 3 masks, best predicted IoU; no object-score zeroing. -> (B, S, S)."""
        sam = self.sam2
        batch = pix_feat.shape[0]
        high_res = [x.permute(1, 2, 0).reshape(x.shape[1], x.shape[2], *s)
                    for x, s in zip(query.vision_feats[:-1], query.sizes[:-1])]
        points = torch.zeros(batch, 1, 2, device=pix_feat.device)
        labels = -torch.ones(batch, 1, dtype=torch.int32, device=pix_feat.device)
        sparse, dense = sam.sam_prompt_encoder(points=(points, labels), boxes=None, masks=None)
        masks, ious, _, _ = sam.sam_mask_decoder(
            image_embeddings=pix_feat, image_pe=sam.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
            multimask_output=sam._use_multimask(False, None), repeat_image=False, high_res_features=high_res,
        )
        best = masks[torch.arange(batch, device=masks.device), ious.argmax(dim=-1)].unsqueeze(1).float()
        logits = F.interpolate(best, size=(sam.image_size, sam.image_size), mode="bilinear", align_corners=False)
        return logits.squeeze(1)

    def forward(self, query: torch.Tensor, support_images: torch.Tensor, support_masks: torch.Tensor,
                priors: torch.Tensor | None = None) -> torch.Tensor:
        """Official inputs -> logits (B, S, S).

        ``query`` (B, 3, S, S) and ``support_images`` (B, K, 3, S, S) float RGB 0-255 (not normalised);
        ``support_masks`` (B, K, S, S) with 1 object, 0 background, 255 ignore; ``priors``
        (B, K, 2, S, S) or, for K = 1, (B, 2, S, S) to skip DINOv2 (as the official training cache does).
        """
        if priors is not None and priors.dim() == 4:
            priors = priors.unsqueeze(1)
        need_dino = priors is None
        support = self.encode_support(support_images, support_masks, with_dino=need_dino)
        return self.segment(self.encode_query(query, with_dino=need_dino), support, priors)
