"""``FewShotSegmenter``: FSSAM behind ``Segmenter.predict`` -- segment the class shown by K support examples.

Images go through the official evaluation path: resized (bilinear) to the model's square input,
support masks resized with nearest neighbour, logits resized back (bilinear, ``align_corners=True``)
to the query's original size and thresholded at probability 0.5. ``support(SupportSet)`` encodes a
support set once (DINOv2 features and SAM 2 memories); ``predict`` / ``predict_many`` then only
encode the queries, which is how a folder is annotated from a few examples.

Input conversions: image files and PIL images in any mode (grayscale, palette, RGBA) are converted
to RGB; numpy images must be uint8 (H, W, 3), or (H, W, 4) whose alpha is dropped. Support masks are
bool or 0 / 1 with 255 = ignore (treated as background, as the official code does).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from samkit.api import Segmenter
from samkit.building import prepare
from samkit.errors import InputError
from samkit.fewshot.build import BACKBONES, TINY_BACKBONE
from samkit.prompts import SupportSet, normalize_prompts
from samkit.registry import HeadSpec, get_spec

if TYPE_CHECKING:
    import torch

    from samkit.fewshot.model import FSSAM, QueryFeatures, SupportEncoding
    from samkit.results import ImageResult

CUDA_BATCH = 4
"""Queries encoded together by ``predict_many`` on CUDA (memory grows linearly with it). On the CPU
queries go one at a time: there batching only adds work (``benchmarks/fewshot.py``: four queries per
pass took 12 % longer than one at a time on 2 threads)."""


@dataclass(frozen=True)
class EncodedSupport:
    """A support set encoded once by :meth:`FewShotSegmenter.support`; pass it as ``prompt=`` to reuse it."""

    encoding: SupportEncoding
    shots: int


class FewShotSegmenter(Segmenter):
    """Segment the class of a ``SupportSet`` (K images + masks) in query images with FSSAM.

    Thread safety: the weights are read-only; ``predict`` may run in several threads. ``support()``
    replaces the default support set of the segmenter (pass an ``EncodedSupport`` explicitly when
    threads use different support sets).
    """

    def __init__(self, model: FSSAM, spec: HeadSpec, config: dict[str, Any], device: torch.device,
                 shots: int | None = None) -> None:
        self.model = model
        self.spec = spec
        self.config = config
        self.device = device
        self.shots = shots
        self._support: EncodedSupport | None = None

    @property
    def image_size(self) -> int:
        return self.model.image_size

    # ---- support --------------------------------------------------------------------------------------

    def support(self, support_set: SupportSet) -> EncodedSupport:
        """Encode ``support_set`` once and make it the default support of later ``predict`` calls."""
        self._ensure_open()
        self._support = self._encode_support(support_set)
        return self._support

    def _encode_support(self, support_set: SupportSet) -> EncodedSupport:
        import torch

        if not isinstance(support_set, SupportSet):
            raise InputError(f"{self.spec.name}: the prompt must be a samkit.SupportSet (K support images and masks), "
                             f"got {type(support_set).__name__}")
        shots = len(support_set)
        if self.shots is not None and shots != self.shots:
            raise InputError(f"this segmenter was loaded with shots={self.shots}, but the SupportSet has {shots} "
                             f"images; give {self.shots} or load with shots=None for any K")
        images = torch.stack([self._to_model(image) for image in support_set.images])[None]  # (1, K, 3, S, S)
        masks = torch.stack([self._mask_to_model(mask) for mask in support_set.masks])[None]  # (1, K, S, S)
        with torch.inference_mode():
            encoding = self.model.encode_support(images, masks)
        return EncodedSupport(encoding=encoding, shots=shots)

    def _to_model(self, image: np.ndarray) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        pixels = torch.from_numpy(np.array(image, dtype=np.float32)).to(self.device).permute(2, 0, 1)[None]
        return F.interpolate(pixels, size=(self.image_size, self.image_size), mode="bilinear",
                             align_corners=False)[0]

    def _mask_to_model(self, mask: np.ndarray) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        values = torch.from_numpy(np.array(mask, dtype=np.float32)).to(self.device)[None, None]
        return F.interpolate(values, size=(self.image_size, self.image_size), mode="nearest")[0, 0]

    def _resolve_support(self, prompt: Any) -> EncodedSupport:
        if prompt is None:
            if self._support is None:
                raise InputError(f"{self.spec.name}: give prompt=samkit.SupportSet(images, masks), or call "
                                 "support(SupportSet(...)) first")
            return self._support
        if isinstance(prompt, EncodedSupport):
            return prompt
        return self._encode_support(prompt)

    # ---- queries --------------------------------------------------------------------------------------

    def predict(self, inputs: Any, prompt: SupportSet | EncodedSupport | None = None, *,
                prompts: Mapping[int, SupportSet | EncodedSupport] | None = None) -> ImageResult:
        """Mask of the support class in image ``inputs`` (``prompts={id: SupportSet}``: one mask per class).

        ``scores`` holds the mean foreground probability inside each mask (the highest probability
        when the mask is empty); ``logits`` the model's (N, S, S) logits at its input size.
        """
        from samkit.results import ImageResult

        self._ensure_open()
        if prompt is not None and prompts is not None:
            raise InputError(f"{self.spec.name}: give either prompt= (one class) or prompts={{id: SupportSet}}, not both")
        if prompts is None:
            supports = {1: self._resolve_support(prompt)}
        else:
            normalized = normalize_prompts(None, prompts, (SupportSet, EncodedSupport), head=self.spec.name)
            for obj_id, items in normalized.items():
                if len(items) != 1:
                    raise InputError(f"{self.spec.name}: object {obj_id} needs exactly one SupportSet, got {len(items)}")
            supports = {obj_id: self._resolve_support(items[0]) for obj_id, items in normalized.items()}
        rgb = _load_rgb(inputs)
        query = self._encode_queries([rgb])  # once, whatever the number of classes
        parts = [self._decode_queries(query, [rgb], support)[0] for support in supports.values()]
        return ImageResult(masks=np.stack([p[0] for p in parts]), scores=np.array([p[1] for p in parts], np.float32),
                           logits=np.stack([p[2] for p in parts]),
                           obj_ids=None if prompts is None else sorted(supports))

    def predict_many(self, images: Iterable[Any], prompt: SupportSet | EncodedSupport | None = None, *,
                     batch_size: int | None = None) -> list[ImageResult]:
        """``predict`` for many queries against one support set, encoded once.

        ``batch_size`` queries share a forward pass (default: 1 on the CPU, ``CUDA_BATCH`` on CUDA).
        """

        self._ensure_open()
        if batch_size is None:
            batch_size = self.default_batch_size
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be a positive int, got {batch_size!r}")
        support = self._resolve_support(prompt)
        results: list[ImageResult] = []
        pending: list[np.ndarray] = []
        for image in images:
            pending.append(_load_rgb(image))
            if len(pending) == batch_size:
                results.extend(self._results(pending, support))
                pending = []
        if pending:
            results.extend(self._results(pending, support))
        return results

    @property
    def default_batch_size(self) -> int:
        """Queries per forward pass of ``predict_many`` when not given: 1 on the CPU, ``CUDA_BATCH`` on CUDA."""
        return CUDA_BATCH if self.device.type == "cuda" else 1

    def _results(self, rgbs: list[np.ndarray], support: EncodedSupport) -> list[ImageResult]:
        from samkit.results import ImageResult

        query = self._encode_queries(rgbs)
        return [ImageResult(masks=mask[None], scores=np.array([score], np.float32), logits=logits[None])
                for mask, score, logits in self._decode_queries(query, rgbs, support)]

    def _encode_queries(self, rgbs: list[np.ndarray]) -> QueryFeatures:
        """DINOv2 and SAM 2 features of the queries: what does not depend on the support."""
        import torch

        queries = torch.stack([self._to_model(rgb) for rgb in rgbs])
        with torch.inference_mode():
            return self.model.encode_query(queries)

    def _decode_queries(self, query: QueryFeatures, rgbs: list[np.ndarray],
                        support: EncodedSupport) -> list[tuple[np.ndarray, float, np.ndarray]]:
        """(mask at the original size, score, model-size logits) per query, given one support."""
        import torch
        import torch.nn.functional as F

        with torch.inference_mode():
            logits = self.model.segment(query, support.encoding).float()  # (B, S, S)
        outputs = []
        for rgb, logit in zip(rgbs, logits):
            full = F.interpolate(logit[None, None], size=rgb.shape[:2], mode="bilinear", align_corners=True)[0, 0]
            probability = full.sigmoid()
            mask = probability >= 0.5
            score = probability[mask].mean() if mask.any() else probability.max()
            outputs.append((mask.cpu().numpy(), float(score), logit.cpu().numpy()))
        return outputs

    def _release(self) -> None:
        self._support = None


def _load_rgb(image: Any) -> np.ndarray:
    from samkit.io.images import load_image

    return load_image(image)


def build_fewshot_segmenter(
    spec: HeadSpec | str,
    *,
    backbone: str | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    backbone_checkpoint: str | os.PathLike[str] | None = None,
    device: str | torch.device = "auto",
    dino_checkpoint: str | os.PathLike[str] | None = None,
    shots: int | None = None,
    official_compat: bool = False,
    seed: int = 0,
) -> FewShotSegmenter:
    """FSSAM as a segmenter.

    ``checkpoint``: a whole FSSAM model (official ``best_1shot.pth`` / ``best_5shot.pth`` or a samkit
    training checkpoint). ``backbone_checkpoint``: public SAM 2.0 weights of ``backbone`` (file or known
    id) and ``dino_checkpoint``: a local ``dinov2_vitb14_pretrain.pth`` -- the untrained start point.
    ``shots``: require K support images per call (None: any K). ``official_compat``: the official 5-shot
    calibration slice (for the released 5-shot weights). ``backbone="tiny-sam2"``: the random test model.
    """
    from samkit.backbones.registry import get_backbone
    from samkit.fewshot.build import build_fssam
    from samkit.hub import resolve_checkpoint

    spec = get_spec(spec) if isinstance(spec, str) else spec
    name = backbone or str(spec.default_backbone)
    if name not in BACKBONES + (TINY_BACKBONE,):
        raise InputError(f"FSSAM runs on the SAM 2.0 backbones {', '.join(BACKBONES)} (or {TINY_BACKBONE} for "
                         f"tests), got backbone={name!r}")
    if shots is not None and (isinstance(shots, bool) or not isinstance(shots, int) or shots < 1):
        raise InputError(f"shots must be a positive int (K support images) or None, got {shots!r}")
    plan = prepare(spec, device=device, checkpoint=checkpoint, seed=seed)
    tiny = name == TINY_BACKBONE
    sam2_file = None
    if backbone_checkpoint is not None and plan.checkpoint is None:
        if tiny:
            raise InputError(f"{TINY_BACKBONE} has no public weights; drop backbone_checkpoint=")
        sam2_file = resolve_checkpoint(backbone_checkpoint, get_backbone(name))
    model = build_fssam(name, dino="tiny" if tiny else "vitb14", checkpoint=plan.checkpoint,
                        sam2_checkpoint=sam2_file, dino_checkpoint=None if plan.checkpoint else dino_checkpoint,
                        official_compat=official_compat, seed=plan.seed, device=plan.device)
    config = {"name": spec.name, "backbone": name, "image_size": model.image_size, "shots": shots,
              "official_compat": official_compat, **plan.config()}
    return FewShotSegmenter(model, spec, config, plan.device, shots=shots)

