"""samkit: SAM2Long, FSSAM and ReferSAM behind one ``Segmenter.predict()`` over SAM / SAM 2 encoders.

Importing samkit is light: ``sam2``, ``segment_anything``, ``transformers`` and ``timm`` load only
when a model that needs them is built.
"""

from samkit.api import Segmenter, list_models, load
from samkit.errors import InputError
from samkit.prompts import Box, Mask, Points, SupportSet, Text
from samkit.results import FrameResult, ImageResult, VideoResult

__version__ = "0.1.0"

__all__ = [
    "Box",
    "FrameResult",
    "ImageResult",
    "InputError",
    "Mask",
    "Points",
    "Segmenter",
    "SupportSet",
    "Text",
    "VideoResult",
    "list_models",
    "load",
]
