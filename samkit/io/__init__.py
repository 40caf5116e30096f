"""Reading images and videos, writing masks: every writer is atomic (temp file + ``os.replace``).

Only numpy and PIL are imported here; PyAV and pycocotools load when a function needs them.
"""

from samkit.io.images import load_image
from samkit.io.masks import (
    DAVIS_PALETTE,
    labels_from_masks,
    masks_to_rle,
    read_binary_png,
    read_palette_png,
    rle_to_mask,
    write_binary_png,
    write_palette_png,
)
from samkit.io.overlay import VideoOverlayWriter, overlay_masks
from samkit.io.video import FileVideo, FolderVideo, IterableVideo, SequenceVideo, VideoSource, open_video

__all__ = [
    "DAVIS_PALETTE",
    "FileVideo",
    "FolderVideo",
    "IterableVideo",
    "SequenceVideo",
    "VideoOverlayWriter",
    "VideoSource",
    "labels_from_masks",
    "load_image",
    "masks_to_rle",
    "open_video",
    "overlay_masks",
    "read_binary_png",
    "read_palette_png",
    "rle_to_mask",
    "write_binary_png",
    "write_palette_png",
]
