"""``samkit.load("refersam", ...)``: referring image segmentation, one mask per text expression.

ReferSAM's VLI fuses the text into the image encoder (every ViT block group is followed by image-text
fusion), so an image cannot be encoded once for several expressions: each expression re-encodes the
image. Several expressions of one call run as one batch (``batch_size`` at a time).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from samkit.api import Segmenter
from samkit.errors import InputError
from samkit.prompts import Text, normalize_prompts
from samkit.registry import HeadSpec, get_spec

if TYPE_CHECKING:
    import torch

    from samkit.referring.model import ReferSAM
    from samkit.referring.text import Tokenizer
    from samkit.results import ImageResult

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PATCH_SIZE = 16
SIZE_MULTIPLE = 32
DEFAULT_BATCH_SIZE = 4
DEFAULT_TEXT_ENCODER = "bert-base-uncased"


def _check_image_size(image_size: Any) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0 or image_size % SIZE_MULTIPLE:
        raise InputError(f"image_size must be a positive multiple of {SIZE_MULTIPLE} for ReferSAM, got {image_size!r}")
    return image_size


def build_referring_segmenter(
    spec: HeadSpec | str,
    *,
    backbone: str | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    backbone_checkpoint: str | os.PathLike[str] | None = None,
    device: str | torch.device = "auto",
    text_encoder: str | os.PathLike[str] = DEFAULT_TEXT_ENCODER,
    image_size: int = 448,
    max_text_length: int = 20,
    batch_size: int = DEFAULT_BATCH_SIZE,
    official_compat: bool = False,
    seed: int = 0,
) -> ReferringSegmenter:
    """A ReferSAM segmenter over SAM ``backbone`` (sam-vit-b / -l / -h, or tiny-sam for tests).

    ``checkpoint``: a trained ReferSAM state_dict (official layout). Without it the model is the
    untrained start point: SAM weights from ``backbone_checkpoint`` (a SAM ``.pth`` or known id) and
    the pretrained ``text_encoder`` (hub id or local directory; ``"minilm"`` = the packaged MiniLM).
    """
    from samkit.backbones.registry import BACKBONES
    from samkit.building import prepare
    from samkit.hub import resolve_checkpoint
    from samkit.referring.build import build_refersam, load_refersam_checkpoint
    from samkit.referring.config import BACKBONE_TO_SAM_TYPE
    from samkit.referring.text import Tokenizer

    spec = get_spec(spec) if isinstance(spec, str) else spec
    backbone = str(spec.default_backbone) if backbone is None else backbone
    if backbone not in BACKBONE_TO_SAM_TYPE:
        raise InputError(f"refersam runs over SAM ViTs: backbone must be one of {', '.join(BACKBONE_TO_SAM_TYPE)}, "
                         f"got {backbone!r}")
    image_size = _check_image_size(image_size)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive int, got {batch_size!r}")
    sam_type = BACKBONE_TO_SAM_TYPE[backbone]
    tokenizer = Tokenizer(text_encoder, max_text_length)
    plan = prepare(spec, device=device, checkpoint=checkpoint, seed=seed, known=())
    sam_checkpoint = None
    if backbone_checkpoint is not None:
        if plan.trained:
            raise InputError("give either checkpoint= (a trained ReferSAM, SAM weights included) or "
                             "backbone_checkpoint= (the SAM start point), not both")
        sam_checkpoint = resolve_checkpoint(backbone_checkpoint, BACKBONES[backbone])
    model = build_refersam(
        sam_type, text_encoder, sam_checkpoint=sam_checkpoint, text_pretrained=not plan.trained,
        official_compat=official_compat, seed=None if plan.trained else seed,
    )  # fmt: skip
    if plan.checkpoint is not None:
        load_refersam_checkpoint(model, plan.checkpoint, sam_type=sam_type)
    model = model.to(plan.device).eval()
    config = {
        "name": spec.name,
        "backbone": backbone,
        "text_encoder": str(text_encoder),
        "image_size": image_size,
        "max_text_length": max_text_length,
        "batch_size": batch_size,
        "official_compat": bool(official_compat),
        **plan.config(),
    }
    return ReferringSegmenter(model, tokenizer, config, plan.device, spec=spec)


class ReferringSegmenter(Segmenter):
    """Segment the object a text expression refers to.

    ``predict(image, prompt=Text(...))`` -> one mask; ``prompt=[Text, ...]`` -> one mask per
    expression (obj_ids 1..N); ``prompts={obj_id: Text}`` -> one mask per id. The image is resized to
    ``image_size`` x ``image_size`` (square, not aspect-preserving, as ReferSAM is trained) and
    normalised with the ImageNet mean / std; the VLI fuses the text into the image encoder, so the
    image is re-encoded for every expression (the expressions of one call run as a batch). Masks
    come back at the image's original resolution: the logits are resized bilinearly, then thresholded
    at 0 (``official_compat=True``: thresholded at the network resolution as the official
    ``sigmoid >= 0.5``, then resized nearest). Scores are the mean foreground probability inside
    each mask (0 for an empty mask); ``logits`` are the network-resolution logits.
    """

    def __init__(self, model: ReferSAM, tokenizer: Tokenizer, config: dict[str, Any], device: torch.device,
                 spec: HeadSpec | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.device = device
        self.spec = get_spec("refersam") if spec is None else spec

    @property
    def image_size(self) -> int:
        return int(self.config["image_size"])

    def predict(
        self,
        inputs: Any,
        prompt: Text | Sequence[Text] | None = None,
        *,
        prompts: Mapping[int, Text] | None = None,
    ) -> ImageResult:
        """Masks of the objects that ``prompt`` / ``prompts`` refer to in image ``inputs``."""
        from samkit.io.images import load_image

        self._ensure_open()
        obj_ids, texts = self._expressions(prompt, prompts)
        rgb = load_image(inputs)
        return self._segment([rgb] * len(texts), texts, obj_ids)[0]

    def predict_batch(self, images: Sequence[Any], texts: Sequence[Text | str]) -> list[ImageResult]:
        """One mask per (image, expression) pair: ``images[i]`` with ``texts[i]`` (same lengths)."""
        from samkit.io.images import load_image

        self._ensure_open()
        images, texts = list(images), list(texts)
        if len(images) != len(texts):
            raise InputError(f"predict_batch pairs images with expressions: got {len(images)} images and "
                             f"{len(texts)} expressions; give one expression per image")
        if not images:
            raise InputError("predict_batch needs at least one (image, expression) pair")
        expressions = [item.text if isinstance(item, Text) else Text(item).text for item in texts]
        rgbs = [load_image(image) for image in images]
        return self._segment(rgbs, expressions, None)

    def _expressions(self, prompt: Any, prompts: Any) -> tuple[list[int], list[str]]:
        if prompts is None and isinstance(prompt, (list, tuple)):
            if not prompt:
                raise InputError("refersam: prompt is an empty list; give Text('...') expressions")
            prompts = {index + 1: item for index, item in enumerate(prompt)}
            prompt = None
        by_object = normalize_prompts(prompt, prompts, (Text,), head=self.spec.name)
        if not by_object:
            raise InputError("refersam needs a text prompt, e.g. predict(image, prompt=samkit.Text('the dog on the left'))")
        for obj_id, items in by_object.items():
            if len(items) != 1:
                raise InputError(f"refersam: object {obj_id} got {len(items)} expressions; give one Text per object")
        obj_ids = sorted(by_object)
        return obj_ids, [by_object[obj_id][0].text for obj_id in obj_ids]

    def _segment(self, rgbs: list[np.ndarray], texts: list[str], obj_ids: list[int] | None) -> list[ImageResult]:
        import torch

        from samkit.results import ImageResult

        for rgb in rgbs:
            if rgb.shape[0] < PATCH_SIZE or rgb.shape[1] < PATCH_SIZE:
                raise InputError(f"image of {rgb.shape[1]}x{rgb.shape[0]} px is smaller than one "
                                 f"{PATCH_SIZE}x{PATCH_SIZE} SAM patch; give a larger image")
        input_ids, attention_mask = self.tokenizer(texts)
        model_inputs: dict[int, torch.Tensor] = {}  # one resize per image, however many expressions share it
        for rgb in rgbs:
            if id(rgb) not in model_inputs:
                model_inputs[id(rgb)] = self._preprocess(rgb)
        batch = int(self.config["batch_size"])
        masks, scores, logits = [], [], []
        with torch.inference_mode():
            for start in range(0, len(texts), batch):
                stop = start + batch
                images = torch.stack([model_inputs[id(rgb)] for rgb in rgbs[start:stop]]).to(self.device)
                pred, _ = self.model(images, input_ids[start:stop].to(self.device), attention_mask[start:stop].to(self.device))
                for rgb, logit in zip(rgbs[start:stop], pred.float()):
                    mask, score = self._postprocess(logit, rgb.shape[:2])
                    masks.append(mask)
                    scores.append(score)
                    logits.append(logit.cpu().numpy())
        if obj_ids is not None:
            return [ImageResult(masks=np.stack(masks), scores=np.asarray(scores, dtype=np.float32),
                                logits=np.stack(logits), obj_ids=obj_ids)]
        return [ImageResult(masks=mask[None], scores=np.asarray([score], dtype=np.float32), logits=logit[None])
                for mask, score, logit in zip(masks, scores, logits)]

    def _preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        """uint8 (H, W, 3) -> float (3, S, S): bilinear square resize, /255, ImageNet mean / std."""
        import torch
        from PIL import Image

        size = self.image_size
        resized = np.asarray(Image.fromarray(rgb).resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0
        tensor = torch.from_numpy(resized).permute(2, 0, 1)
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        return (tensor - mean) / std

    def _postprocess(self, logit: torch.Tensor, image_hw: tuple[int, int]) -> tuple[np.ndarray, float]:
        import torch.nn.functional as F

        if self.model.official_compat:
            binary = (logit.sigmoid() >= 0.5).float()[None, None]
            mask = F.interpolate(binary, size=image_hw, mode="nearest")[0, 0] > 0
            probs = F.interpolate(logit[None, None], size=image_hw, mode="bilinear", align_corners=False)[0, 0].sigmoid()
        else:
            resized = F.interpolate(logit[None, None], size=image_hw, mode="bilinear", align_corners=False)[0, 0]
            mask = resized > 0
            probs = resized.sigmoid()
        score = float(probs[mask].mean()) if bool(mask.any()) else 0.0
        return mask.cpu().numpy(), score
