"""The backbone's own promptable image segmenter as a head: one per SAM / SAM 2 backbone.

``samkit.load("sam2.1-hiera-tiny")`` (any backbone name) builds it. Importing this package is light;
the segmenter loads ``torch`` and the upstream predictor on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ImageSegmenter": "samkit.image.segmenter",
    "build_image_segmenter": "samkit.image.segmenter",
}

__all__ = ["ImageSegmenter", "build_image_segmenter"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'samkit.image' has no attribute {name!r}")
