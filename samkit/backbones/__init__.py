"""SAM / SAM 2 backbones: the registry (light), builders and the backbone image segmenter (heavy, on demand).

Importing this package imports nothing heavy; use the submodules:
``registry`` (names and checkpoints), ``sam2_models`` / ``sam_models`` / ``tiny`` (builders) and
``image_segmenter`` (the backbone's own promptable predictor behind ``Segmenter.predict``).
"""

from samkit.backbones.registry import BACKBONES, BackboneSpec, get_backbone

__all__ = ["BACKBONES", "BackboneSpec", "get_backbone"]
