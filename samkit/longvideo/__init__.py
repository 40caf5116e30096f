"""Long-video object segmentation: SAM2Long's training-free memory tree over unmodified SAM 2.

``TreeConfig`` (light, no torch) is imported eagerly; the segmenter, session and engine load
``torch`` / ``sam2`` on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

from samkit.longvideo.config import TreeConfig

_LAZY = {
    "LongVideoSegmenter": "samkit.longvideo.segmenter",
    "LongVideoSession": "samkit.longvideo.session",
    "build_longvideo_segmenter": "samkit.longvideo.segmenter",
    "TreeTracker": "samkit.longvideo.predictor",
}

__all__ = ["LongVideoSegmenter", "LongVideoSession", "TreeConfig", "TreeTracker", "build_longvideo_segmenter"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'samkit.longvideo' has no attribute {name!r}")
