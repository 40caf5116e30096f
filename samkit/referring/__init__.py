"""ReferSAM referring image segmentation (text -> mask) over SAM.

Light at import time: the model classes load on first attribute access, so the head registry can
import ``samkit.referring.spec`` without torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "ReferSAM": "samkit.referring.model",
    "build_refersam": "samkit.referring.build",
    "load_refersam_checkpoint": "samkit.referring.build",
    "sam_state_to_refersam": "samkit.referring.build",
    "Tokenizer": "samkit.referring.text",
    "ReferringSegmenter": "samkit.referring.segmenter",
    "build_referring_segmenter": "samkit.referring.segmenter",
}

__all__ = [
    "ReferSAM",
    "ReferringSegmenter",
    "Tokenizer",
    "build_referring_segmenter",
    "build_refersam",
    "load_refersam_checkpoint",
    "sam_state_to_refersam",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'samkit.referring' has no attribute {name!r}")
    return getattr(import_module(module), name)
