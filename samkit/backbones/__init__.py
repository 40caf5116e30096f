"""SAM / SAM 2 backbones: the registry (light) and pure model builders (heavy, on demand).

Importing this package imports nothing heavy; use the submodules: ``registry`` (names and
checkpoints), ``sam2_models`` / ``sam_models`` / ``tiny`` (builders). Segmenters live in the heads
(the backbone's own promptable segmenter is the ``samkit.image`` head).
"""

from samkit.backbones.registry import BACKBONES, BackboneSpec, get_backbone

__all__ = ["BACKBONES", "BackboneSpec", "get_backbone"]
