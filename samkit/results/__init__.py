"""What ``Segmenter.predict`` returns: ``ImageResult`` for an image, a streaming ``VideoResult`` of
``FrameResult`` for a video, each with writers for the usual mask formats.

Masks are bool (H, W) at the input's original resolution; object ids are positive ints, 0 is
background. Every writer is atomic: a file appears complete or not at all.
"""

from samkit.results.image import IMAGE_SAVE_SUFFIXES, ImageResult, check_obj_id
from samkit.results.video import FrameResult, VideoResult
from samkit.results.writers import (
    COCO_RLE_FILE,
    DEFAULT_OVERLAY_FPS,
    OVERLAY_FILE,
    VIDEO_FORMATS,
    check_object_names,
)

__all__ = [
    "COCO_RLE_FILE",
    "DEFAULT_OVERLAY_FPS",
    "IMAGE_SAVE_SUFFIXES",
    "OVERLAY_FILE",
    "VIDEO_FORMATS",
    "FrameResult",
    "ImageResult",
    "VideoResult",
    "check_obj_id",
    "check_object_names",
]
