"""Few-shot segmentation: FSSAM (ICML'25) over unmodified SAM 2.0 and DINOv2 (timm).

Light on import: the model, builder and segmenter load ``torch`` / ``sam2`` / ``timm`` on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "FSSAM": "samkit.fewshot.model",
    "SupportEncoding": "samkit.fewshot.model",
    "build_fssam": "samkit.fewshot.build",
    "load_fssam_checkpoint": "samkit.fewshot.build",
    "DinoV2": "samkit.fewshot.dino",
    "FewShotSegmenter": "samkit.fewshot.segmenter",
    "build_fewshot_segmenter": "samkit.fewshot.segmenter",
    "dice_loss": "samkit.fewshot.loss",
}

__all__ = [
    "FSSAM",
    "DinoV2",
    "FewShotSegmenter",
    "SupportEncoding",
    "build_fewshot_segmenter",
    "build_fssam",
    "dice_loss",
    "load_fssam_checkpoint",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'samkit.fewshot' has no attribute {name!r}")
