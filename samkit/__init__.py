"""samkit: SAM-family segmentation heads behind one ``Segmenter.predict()`` over SAM / SAM 2 encoders.

Heads: SAM2Long long-video segmentation (``sam2long``, ``sam2``), FSSAM few-shot segmentation
(``fssam``), ReferSAM referring segmentation (``refersam``) and every backbone's own image
segmenter; ``samkit.engine`` trains and evaluates the trainable ones. Third-party heads plug in through
the ``samkit.heads`` entry-point group (see ``samkit.registry``).

Importing samkit is light: ``torch``, ``sam2``, ``segment_anything``, ``transformers`` and ``timm``
load only when a model that needs them is built.
"""

from samkit.api import Segmenter, list_models, load
from samkit.errors import InputError
from samkit.prompts import Box, Mask, Points, SupportSet, Text
from samkit.registry import HeadSpec, WeightsSpec, register
from samkit.results import FrameResult, ImageResult, VideoResult

__version__ = "0.1.0"

__all__ = [
    "Box",
    "FrameResult",
    "HeadSpec",
    "ImageResult",
    "InputError",
    "Mask",
    "Points",
    "Segmenter",
    "SupportSet",
    "Text",
    "VideoResult",
    "WeightsSpec",
    "list_models",
    "load",
    "register",
]
