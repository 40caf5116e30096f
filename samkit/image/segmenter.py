"""The image head: a backbone's own promptable image predictor behind ``Segmenter.predict``.

SAM 2 backbones run ``sam2``'s ``SAM2ImagePredictor``, SAM backbones ``segment_anything``'s
``SamPredictor``; this module only converts samkit prompts to their inputs and their outputs to an
``ImageResult``, so results are exactly the upstream predictors'.

Mask prompts: SAM-style decoders take *low-resolution logits* (256x256 at 1024 px, i.e.
``prompt_encoder.mask_input_size``) as ``mask_input``. A bool mask is converted by mapping
{0, 1} to {-10, +10} logits (sam2's ``sigmoid_scale_for_mem_enc=20, sigmoid_bias_for_mem_enc=-10``
mapping of a binary mask to logits) and resizing it (bilinear, antialiased) onto the low-res grid
the way the image itself is mapped onto the model input: a plain resize for SAM 2 (which squashes
the image to a square) and a longest-side resize padded bottom / right with background for SAM.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from samkit.api import Segmenter
from samkit.backbones.registry import SAM2, BackboneSpec, get_backbone
from samkit.building import prepare
from samkit.errors import InputError
from samkit.prompts import Box, Mask, Points, normalize_prompts
from samkit.registry import HeadSpec, get_spec

if TYPE_CHECKING:
    import torch

    from samkit.results import ImageResult

ALLOWED_PROMPTS = (Points, Box, Mask)

MASK_PROMPT_LOGIT = 10.0
"""Logit magnitude of a bool mask prompt: foreground +10, background -10."""
HIGH_RES_LEVELS = (4, 2, 1)
"""SAM 2's three decoder feature levels, as multiples of the stride-16 embedding size."""


def sam2_feature_sizes(model: Any) -> list[tuple[int, int]]:
    """Spatial sizes of SAM 2's three decoder feature maps (stride 4, 8, 16) at the model's image size.

    ``SAM2ImagePredictor`` hard-codes the 1024 px sizes [(256, 256), (128, 128), (64, 64)]; any other
    image size needs these instead.
    """
    embedding = model.image_size // model.backbone_stride
    return [(embedding * level, embedding * level) for level in HIGH_RES_LEVELS]


def mask_to_sam2_logits(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(1, h, w) float32 logits for SAM 2's ``mask_input``: the mask resized to the low-res grid."""
    import torch
    import torch.nn.functional as F

    soft = torch.from_numpy(np.array(mask, dtype=np.float32))[None, None]
    soft = F.interpolate(soft, size=size, mode="bilinear", align_corners=False, antialias=True).clamp(0.0, 1.0)
    return ((soft[0] * 2.0 - 1.0) * MASK_PROMPT_LOGIT).numpy()


def mask_to_sam_logits(mask: np.ndarray, size: int) -> np.ndarray:
    """(1, size, size) float32 logits for SAM's ``mask_input``: longest side resized to ``size``, padded."""
    import torch
    import torch.nn.functional as F
    from segment_anything.utils.transforms import ResizeLongestSide

    height, width = ResizeLongestSide.get_preprocess_shape(mask.shape[0], mask.shape[1], size)
    soft = torch.from_numpy(np.array(mask, dtype=np.float32))[None, None]
    soft = F.interpolate(soft, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    soft = soft.clamp(0.0, 1.0)
    padded = torch.zeros((1, size, size), dtype=torch.float32)
    padded[:, :height, :width] = soft[0]
    return ((padded * 2.0 - 1.0) * MASK_PROMPT_LOGIT).numpy()


class ImageSegmenter(Segmenter):
    """Segment an image with a SAM / SAM 2 backbone from points, a box and / or a mask per object.

    Thread safety: the upstream predictor keeps the current image's features, so one ``predict`` call
    holds a lock from ``set_image`` to its last decoded object; concurrent calls from several threads
    are correct and run one after the other.
    """

    def __init__(self, model: torch.nn.Module, backbone: BackboneSpec, config: dict[str, Any],
                 device: torch.device, spec: HeadSpec | None = None) -> None:
        self.model = model
        self.backbone = backbone
        self.spec = get_spec(backbone.name) if spec is None else spec
        self.config = config
        self.device = device
        self._lock = threading.Lock()
        if backbone.family == SAM2:
            from sam2.sam2_image_predictor import SAM2ImagePredictor

            self.predictor = SAM2ImagePredictor(model)
            self.predictor._bb_feat_sizes = sam2_feature_sizes(model)
            self.mask_input_size = tuple(model.sam_prompt_encoder.mask_input_size)
        else:
            from segment_anything import SamPredictor

            self.predictor = SamPredictor(model)
            self.mask_input_size = tuple(model.prompt_encoder.mask_input_size)

    def predict(
        self,
        inputs: Any,
        prompt: Points | Box | Mask | Sequence[Points | Box | Mask] | None = None,
        *,
        prompts: Mapping[int, Points | Box | Mask | Sequence[Points | Box | Mask]] | None = None,
        multimask_output: bool = False,
    ) -> ImageResult:
        """Masks for one object (``prompt``) or several (``prompts={obj_id: prompt(s)}``) in image ``inputs``.

        One object: ``multimask_output=True`` returns the predictor's 3 candidates (obj_ids None).
        Several objects: one mask per object in ascending obj_id order (the best-scoring candidate
        when ``multimask_output``). No prompt at all: the model's unprompted guess.
        Masks are bool (N, H, W) at the image resolution, scores float32 (N,), logits low-res (N, h, w).
        """
        from samkit.io.images import load_image
        from samkit.results import ImageResult

        self._ensure_open()
        by_object = normalize_prompts(prompt, prompts, ALLOWED_PROMPTS, head=self.spec.name)
        rgb = load_image(inputs)
        image_hw = rgb.shape[:2]
        object_inputs = {obj_id: self._predictor_inputs(items, image_hw) for obj_id, items in by_object.items()}
        with self._lock:
            self._set_image(rgb)
            if prompts is None:
                masks, scores, logits = self._decode(object_inputs.get(1, self._predictor_inputs([], image_hw)),
                                                     multimask_output)
                return ImageResult(masks=masks, scores=scores, logits=logits)
            obj_ids = sorted(object_inputs)
            results = []
            for obj_id in obj_ids:
                masks, scores, logits = self._decode(object_inputs[obj_id], multimask_output)
                best = int(np.argmax(scores))
                results.append((masks[best], scores[best], logits[best]))
        return ImageResult(
            masks=np.stack([item[0] for item in results]),
            scores=np.asarray([item[1] for item in results], dtype=np.float32),
            logits=np.stack([item[2] for item in results]),
            obj_ids=obj_ids,
        )

    def _release(self) -> None:
        with self._lock:
            if self.backbone.family == SAM2:
                self.predictor.reset_predictor()
            else:
                self.predictor.reset_image()

    def _set_image(self, rgb: np.ndarray) -> None:
        if self.backbone.family == SAM2:
            self.predictor.set_image(rgb)
        else:
            self.predictor.set_image(rgb, image_format="RGB")

    def _decode(self, inputs: dict[str, Any], multimask_output: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        masks, scores, logits = self.predictor.predict(**inputs, multimask_output=multimask_output)
        return masks.astype(bool), scores.astype(np.float32), logits.astype(np.float32)

    def _predictor_inputs(self, items: list[Points | Box | Mask], image_hw: tuple[int, int]) -> dict[str, Any]:
        points = [item for item in items if isinstance(item, Points)]
        boxes = [item for item in items if isinstance(item, Box)]
        masks = [item for item in items if isinstance(item, Mask)]
        if len(boxes) > 1 or len(masks) > 1:
            raise InputError(f"one object takes at most one Box and one Mask (got {len(boxes)} boxes, "
                             f"{len(masks)} masks); give each object its own id in prompts={{obj_id: ...}}")
        for item in items:
            if item.frame != 0:
                raise InputError(f"{type(item).__name__}.frame={item.frame}, but an image has only frame 0")
        inputs: dict[str, Any] = {"point_coords": None, "point_labels": None, "box": None, "mask_input": None}
        if points:
            inputs["point_coords"] = np.concatenate([item.xy for item in points]).astype(np.float32)
            inputs["point_labels"] = np.concatenate([item.labels for item in points]).astype(np.int32)
        if boxes:
            inputs["box"] = np.array(boxes[0].xyxy, dtype=np.float32)
        if masks:
            mask = masks[0].mask
            if mask.shape != tuple(image_hw):
                raise InputError(f"Mask prompt has shape {mask.shape}, expected the image's {tuple(image_hw)}")
            if self.backbone.family == SAM2:
                inputs["mask_input"] = mask_to_sam2_logits(mask, self.mask_input_size)
            else:
                inputs["mask_input"] = mask_to_sam_logits(mask, self.mask_input_size[0])
        return inputs


def build_image_segmenter(
    spec: HeadSpec | str,
    *,
    backbone: str | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    backbone_checkpoint: str | os.PathLike[str] | None = None,
    device: str | torch.device = "auto",
    image_size: int | None = None,
    seed: int = 0,
) -> ImageSegmenter:
    """The image segmenter of a backbone (``spec`` or its name); ``checkpoint=None`` gives seeded random
    (untrained) weights. The backbone is the head itself, so ``backbone`` may only repeat its name."""
    spec = get_spec(spec) if isinstance(spec, str) else spec
    name = str(spec.default_backbone)
    if backbone is not None and backbone != name:
        raise InputError(f"{spec.name!r} is itself a backbone; drop backbone={backbone!r} "
                         f"(or load {backbone!r} by its own name)")
    if backbone_checkpoint is not None:
        raise InputError(f"{spec.name!r} is a backbone's own segmenter: its weights are the backbone's, so pass "
                         "them as checkpoint=, not backbone_checkpoint=")
    backbone_spec = get_backbone(name)
    plan = prepare(spec, device=device, checkpoint=checkpoint, seed=seed, known=backbone_spec)
    if backbone_spec.family == SAM2:
        from samkit.backbones.sam2_models import build_sam2_model

        model = build_sam2_model(name, image_size=image_size, checkpoint=plan.checkpoint, device=plan.device,
                                 seed=seed)
        model_image_size = model.image_size
    else:
        from samkit.backbones.sam_models import build_sam_model

        model = build_sam_model(name, image_size=image_size, checkpoint=plan.checkpoint, device=plan.device, seed=seed)
        model_image_size = model.image_encoder.img_size
    config = {
        "name": spec.name,
        "backbone": name,
        "family": backbone_spec.family,
        "image_size": int(model_image_size),
        **plan.config(),
    }
    return ImageSegmenter(model, backbone_spec, config, plan.device, spec=spec)
