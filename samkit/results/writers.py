"""Writers of a ``VideoResult``: DAVIS PNGs, the SA-V per-object layout, COCO RLE, an overlay video.

Each writer streams the result's frames to disk (the overlay keeps compact RLE masks until the end)
and writes every file atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from samkit.errors import InputError
from samkit.io.atomic import atomic_open
from samkit.io.masks import masks_to_rle, rle_to_mask, write_binary_png, write_palette_png
from samkit.io.overlay import VideoOverlayWriter, overlay_masks

if TYPE_CHECKING:
    from samkit.results.video import VideoResult

VIDEO_FORMATS = ("davis", "per-object", "coco-rle", "overlay")
COCO_RLE_FILE = "masks.json"
OVERLAY_FILE = "overlay.mp4"
DEFAULT_OVERLAY_FPS = 24.0
"""Frame rate of an overlay video when neither the caller nor the source video states one."""
_SEPARATORS = tuple(sorted({"/", "\\", os.sep, os.altsep or "/"}))


def check_object_names(object_names: Mapping[int, str] | None) -> dict[int, str]:
    """``{obj_id: folder name}`` for the per-object layout, refusing names that are not one plain folder.

    A name is joined to the output folder, so it must be a non-empty str without path separators,
    NUL bytes, and not ``.`` or ``..`` (which would write outside it); two objects cannot share one.
    """
    from samkit.results.image import check_obj_id

    if object_names is None:
        return {}
    if not isinstance(object_names, Mapping):
        raise InputError(f"object_names must be a dict {{obj_id: folder name}}, got {type(object_names).__name__}")
    checked: dict[int, str] = {}
    for obj_id, name in object_names.items():
        obj_id = check_obj_id(obj_id, "object_names")
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"object_names[{obj_id}] must be a non-empty folder name, got {name!r}")
        if name in (".", "..") or "\0" in name or any(separator in name for separator in _SEPARATORS):
            raise InputError(
                f"object_names[{obj_id}] = {name!r} is not a plain folder name: names may not be '.' or "
                "'..' nor contain path separators ('/', '\\') or NUL, so that every mask stays inside "
                "the output folder"
            )
        checked[obj_id] = name
    named = sorted(checked.values())
    clashes = sorted({name for name in named if named.count(name) > 1})
    if clashes:
        raise InputError(f"object_names gives several objects the same folder name: {clashes}")
    return checked


def write_davis(result: VideoResult, directory: Path) -> Path:
    """``{frame}.png`` palette label maps (pixel = object id)."""
    for frame in result:
        write_palette_png(directory / f"{result.frame_name(frame.frame_idx)}.png", frame.label_map(result.shape))
    return directory


def write_per_object(result: VideoResult, directory: Path, object_names: Mapping[int, str]) -> Path:
    """``{object}/{frame}.png`` binary (0 / 255) masks; ``object_names`` must be checked already."""
    for frame in result:
        name = result.frame_name(frame.frame_idx)
        for obj_id, mask in frame.masks.items():
            folder = object_names.get(obj_id, f"{obj_id:03d}")
            write_binary_png(directory / folder / f"{name}.png", mask)
    return directory


def write_coco_rle(result: VideoResult, directory: Path) -> Path:
    """One ``masks.json`` of every frame's masks as COCO RLE (schema in ``VideoResult.save``)."""
    frames_written = 0
    with atomic_open(directory / COCO_RLE_FILE, "w", encoding="utf-8") as handle:
        handle.write('{"annotations": [')
        separator = ""
        for frame in result:
            frames_written += 1
            for obj_id in frame.obj_ids:
                annotation = {
                    "frame": frame.frame_idx,
                    "obj_id": obj_id,
                    "score": frame.scores.get(obj_id),
                    "segmentation": masks_to_rle(frame.masks[obj_id]),
                }
                handle.write(separator + json.dumps(annotation))
                separator = ", "
        video = {
            "height": result.height,
            "width": result.width,
            "num_frames": frames_written,
            "fps": result.fps,
            "frame_names": result.frame_names,
        }
        handle.write(f'], "video": {json.dumps(video)}}}')
    return directory


def write_overlay(result: VideoResult, directory: Path, fps: float | None, video: Any) -> Path:
    """``overlay.mp4``: the source frames with masks tinted, in time order whatever order they came in.

    A reverse run yields its frames last to first, and a tracker may yield a frame long after it read
    it. So the masks are kept as RLE until the stream ends, then the video is written front to back
    with a reader of its own: each source frame is decoded once, and the tracker's reads and cache
    are left alone.
    """
    from samkit.io.video import IterableVideo, VideoSource, open_video
    from samkit.io.video_file import FileVideo

    source = video if video is not None else result.video
    if source is None:
        raise InputError(
            "format='overlay' needs the video frames: pass save(..., video=<folder, file or list of frames>)"
        )
    opened = open_video(source)
    reader = opened.fork() if isinstance(opened, FileVideo) else opened
    try:
        if isinstance(opened, IterableVideo):
            raise InputError(
                "format='overlay' must read the frames again, which a one-shot iterable (generator) cannot; "
                "pass save(..., video=<folder, file or list of frames>)"
            )
        pending = {
            frame.frame_idx: {obj_id: masks_to_rle(mask) for obj_id, mask in frame.masks.items()}
            for frame in result
        }
        rate = fps or result.fps or opened.fps or DEFAULT_OVERLAY_FPS
        with VideoOverlayWriter(directory / OVERLAY_FILE, rate, opened.width, opened.height) as writer:
            for frame_idx in sorted(pending):
                masks = {obj_id: rle_to_mask(rle) for obj_id, rle in pending.pop(frame_idx).items()}
                writer.write(overlay_masks(reader[frame_idx], masks))
    finally:
        if reader is not opened:
            reader.close()
        if not isinstance(source, VideoSource):
            opened.close()
    return directory
