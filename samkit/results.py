"""What ``Segmenter.predict`` returns: ``ImageResult`` for an image, a streaming ``VideoResult`` of
``FrameResult`` for a video, each with writers for the usual mask formats.

Masks are bool (H, W) at the input's original resolution; object ids are positive ints, 0 is
background. Every writer is atomic: a file appears complete or not at all.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from samkit.errors import InputError
from samkit.io.atomic import atomic_open, atomic_path, atomic_write_text
from samkit.io.images import ImageInput
from samkit.io.masks import (
    as_bool_mask,
    labels_from_masks,
    masks_to_rle,
    write_binary_png,
    write_palette_png,
)
from samkit.io.overlay import DEFAULT_ALPHA, VideoOverlayWriter, overlay_masks

IMAGE_SAVE_SUFFIXES = (".png", ".json", ".npz")
VIDEO_FORMATS = ("davis", "per-object", "coco-rle", "overlay")
COCO_RLE_FILE = "masks.json"
OVERLAY_FILE = "overlay.mp4"
DEFAULT_OVERLAY_FPS = 24.0
"""Frame rate of an overlay video when neither the caller nor the source video states one."""


def _check_obj_id(obj_id: Any, owner: str) -> int:
    if isinstance(obj_id, (bool, np.bool_)) or not isinstance(obj_id, (int, np.integer)) or obj_id < 1:
        raise InputError(f"{owner}: object ids must be positive ints (0 is background), got {obj_id!r}")
    return int(obj_id)


@dataclass(eq=False)
class ImageResult:
    """Masks of N objects in one image.

    ``masks`` bool (N, H, W); ``scores`` float32 (N,) (predicted IoU / confidence); ``logits``
    optional low-resolution mask logits with N leading; ``obj_ids`` the object id of each mask
    (default 1..N), used in label maps, PNGs and overlays.
    """

    masks: np.ndarray
    scores: np.ndarray
    logits: np.ndarray | None = None
    obj_ids: list[int] | None = None

    def __post_init__(self) -> None:
        masks = np.asarray(self.masks)
        if masks.ndim == 2:
            masks = masks[None]
        if masks.ndim != 3:
            raise InputError(f"ImageResult.masks must have shape (N, H, W), got {masks.shape}")
        if masks.dtype != np.bool_:
            if masks.dtype.kind not in "biu" or not np.isin(masks, (0, 1)).all():
                raise InputError(f"ImageResult.masks must be bool (or 0/1), got dtype {masks.dtype}")
            masks = masks.astype(bool)
        count = masks.shape[0]
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if scores.shape != (count,):
            raise InputError(
                f"ImageResult.scores must have shape ({count},) to match {count} masks, got {scores.shape}"
            )
        if not np.isfinite(scores).all():
            raise InputError(f"ImageResult.scores must be finite, got {scores.tolist()}")
        logits = None if self.logits is None else np.asarray(self.logits)
        if logits is not None and (logits.ndim == 0 or logits.shape[0] != count):
            raise InputError(
                f"ImageResult.logits must have {count} as leading dimension, got shape {logits.shape}"
            )
        if self.obj_ids is None:
            obj_ids = list(range(1, count + 1))
        else:
            obj_ids = [_check_obj_id(obj_id, "ImageResult.obj_ids") for obj_id in self.obj_ids]
            if len(obj_ids) != count or len(set(obj_ids)) != count:
                raise InputError(
                    f"ImageResult.obj_ids must be {count} distinct ids, got {list(self.obj_ids)}"
                )
        self.masks, self.scores, self.logits, self.obj_ids = masks, scores, logits, obj_ids

    def __len__(self) -> int:
        return self.masks.shape[0]

    @property
    def height(self) -> int:
        return self.masks.shape[1]

    @property
    def width(self) -> int:
        return self.masks.shape[2]

    def masks_by_id(self) -> dict[int, np.ndarray]:
        """``{obj_id: bool (H, W)}``."""
        return dict(zip(self.obj_ids, self.masks))

    def to_label_map(self) -> np.ndarray:
        """uint8 (H, W): each pixel holds its object id, 0 = background; overlaps go to the higher score."""
        return labels_from_masks(
            self.masks_by_id(),
            (self.height, self.width),
            scores=dict(zip(self.obj_ids, self.scores.tolist())),
        )

    def to_rle(self) -> list[dict[str, Any]]:
        """One COCO RLE ``{"size": [H, W], "counts": str}`` per mask, in mask order."""
        return [masks_to_rle(mask) for mask in self.masks]

    def overlay(self, image: ImageInput, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
        """``image`` with each object's mask tinted in its palette colour (RGB uint8)."""
        return overlay_masks(image, self.masks_by_id(), alpha=alpha)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the result; the extension picks the format.

        * ``.png``: palette label map (DAVIS colours), pixel = object id.
        * ``.json``: ``{"height", "width", "annotations": [{"obj_id", "score", "segmentation": RLE}]}``.
        * ``.npz``: arrays ``masks``, ``scores``, ``obj_ids`` (and ``logits`` when present).
        """
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".png":
            return write_palette_png(path, self.to_label_map())
        if suffix == ".json":
            document = {
                "height": self.height,
                "width": self.width,
                "annotations": [
                    {"obj_id": obj_id, "score": float(score), "segmentation": rle}
                    for obj_id, score, rle in zip(self.obj_ids, self.scores, self.to_rle())
                ],
            }
            return atomic_write_text(path, json.dumps(document))
        if suffix == ".npz":
            arrays = {
                "masks": self.masks,
                "scores": self.scores,
                "obj_ids": np.asarray(self.obj_ids, dtype=np.int64),
            }
            if self.logits is not None:
                arrays["logits"] = self.logits
            with atomic_path(path) as temporary:
                np.savez_compressed(temporary, **arrays)
            return path
        raise InputError(
            f"cannot save an ImageResult as {path.name!r}: use one of {', '.join(IMAGE_SAVE_SUFFIXES)}"
        )


@dataclass(eq=False)
class FrameResult:
    """The masks of one video frame: ``{obj_id: bool (H, W)}`` and ``{obj_id: score}``.

    Objects absent from ``masks`` are not tracked on this frame (e.g. not yet prompted).
    """

    frame_idx: int
    masks: dict[int, np.ndarray]
    scores: dict[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.frame_idx, (bool, np.bool_)) or not isinstance(self.frame_idx, (int, np.integer)):
            raise InputError(f"FrameResult.frame_idx must be an int, got {self.frame_idx!r}")
        if self.frame_idx < 0:
            raise InputError(f"FrameResult.frame_idx must be >= 0, got {self.frame_idx}")
        if not isinstance(self.masks, Mapping):
            raise InputError(
                f"FrameResult.masks must be a dict {{obj_id: bool (H, W)}}, got {type(self.masks).__name__}"
            )
        owner = f"FrameResult (frame {self.frame_idx})"
        masks: dict[int, np.ndarray] = {}
        shape = None
        for obj_id, mask in self.masks.items():
            obj_id = _check_obj_id(obj_id, owner)
            masks[obj_id] = as_bool_mask(mask, f"{owner} mask of object {obj_id}", shape)
            shape = masks[obj_id].shape
        unknown = sorted(set(self.scores) - set(masks))
        if unknown:
            raise InputError(f"{owner} has scores for object ids {unknown} that have no mask")
        scores = {int(obj_id): float(score) for obj_id, score in self.scores.items()}
        if not all(math.isfinite(score) for score in scores.values()):
            raise InputError(f"{owner} scores must be finite, got {scores}")
        self.frame_idx = int(self.frame_idx)
        self.masks = masks
        self.scores = scores

    @property
    def obj_ids(self) -> list[int]:
        return sorted(self.masks)

    @property
    def shape(self) -> tuple[int, int] | None:
        """(H, W) of the masks, or ``None`` when the frame has no object."""
        return next(iter(self.masks.values())).shape if self.masks else None

    def label_map(self, shape: tuple[int, int] | None = None) -> np.ndarray:
        """uint8 (H, W) label map; overlaps go to the higher score when every object has one, else
        to the higher id. ``shape`` is needed only for a frame without objects."""
        shape = self.shape or shape
        if shape is None:
            raise InputError(f"frame {self.frame_idx} has no objects; pass shape=(H, W) to get its label map")
        scores = self.scores if set(self.scores) == set(self.masks) else None
        return labels_from_masks(self.masks, shape, scores=scores)


class VideoResult:
    """The per-frame results of a video, streamed: frames are computed as you iterate.

    A ``VideoResult`` can be iterated once (the model runs while you iterate). To go over the frames
    again, call ``collect()`` first, which keeps every ``FrameResult`` in memory. ``save`` streams
    to disk without keeping masks around, so it suits videos of any length.
    """

    def __init__(
        self,
        frames: Iterable[FrameResult],
        *,
        height: int | None = None,
        width: int | None = None,
        num_frames: int | None = None,
        fps: float | None = None,
        video: Any = None,
        frame_names: list[str] | None = None,
        object_names: Mapping[int, str] | None = None,
    ) -> None:
        self._collected: list[FrameResult] | None = (
            list(frames) if isinstance(frames, (list, tuple)) else None
        )
        self._frames = frames
        self._consumed = False
        self.video = video
        self.height = height if height is not None else getattr(video, "height", None)
        self.width = width if width is not None else getattr(video, "width", None)
        if num_frames is None:
            num_frames = (
                len(self._collected) if self._collected is not None else getattr(video, "num_frames", None)
            )
        self.num_frames = num_frames
        self.fps = fps if fps is not None else getattr(video, "fps", None)
        self.frame_names = (
            list(frame_names) if frame_names is not None else getattr(video, "frame_names", None)
        )
        self.object_names = dict(object_names) if object_names is not None else None

    def __repr__(self) -> str:
        state = (
            "collected" if self._collected is not None else ("consumed" if self._consumed else "streaming")
        )
        return (
            f"VideoResult({state}, num_frames={self.num_frames}, height={self.height}, width={self.width}, "
            f"fps={self.fps})"
        )

    def __iter__(self) -> Iterator[FrameResult]:
        if self._collected is not None:
            return self._checked(iter(self._collected))
        if self._consumed:
            raise InputError(
                "this VideoResult streams its frames and has already been iterated; call .collect() "
                "before the first pass to keep the frames, or run predict() again"
            )
        self._consumed = True
        return self._checked(iter(self._frames))

    def with_progress(self, description: str, position: int = 0) -> VideoResult:
        """The same frames, drawing a progress bar (per frame, of ``num_frames`` when known) as they stream."""
        from tqdm.auto import tqdm

        frames = tqdm(iter(self), desc=description, total=self.num_frames, unit="frame", position=position, leave=False)
        return VideoResult(
            frames,
            height=self.height,
            width=self.width,
            num_frames=self.num_frames,
            fps=self.fps,
            video=self.video,
            frame_names=self.frame_names,
            object_names=self.object_names,
        )

    def collect(self) -> list[FrameResult]:
        """Run to the end and keep every frame (holds all masks in memory); later passes reuse them."""
        if self._collected is None:
            self._collected = list(iter(self))
        return self._collected

    def save(
        self,
        directory: str | os.PathLike[str],
        format: str = "davis",
        fps: float | None = None,
        video: Any = None,
        object_names: Mapping[int, str] | None = None,
    ) -> Path:
        """Stream every frame to ``directory`` in one of the formats below; returns ``directory``.

        * ``"davis"``: ``{frame}.png`` palette PNGs (pixel = object id), the layout of DAVIS,
          YouTube-VOS and LVOS predictions.
        * ``"per-object"``: SA-V layout ``{object}/{frame}.png``, binary (0 / 255) PNGs, one per
          object present in the frame; ``{object}`` is ``object_names[obj_id]`` when given (e.g. the
          ground-truth folder names, SA-V's start at ``000``), else ``{obj_id:03d}``.
        * ``"coco-rle"``: one ``masks.json``::

              {"annotations": [{"frame": int, "obj_id": int, "score": float | null,
                                "segmentation": {"size": [H, W], "counts": str}}, ...],
               "video": {"height": int, "width": int, "num_frames": int, "fps": float | null,
                         "frame_names": [str, ...] | null}}

          ``num_frames`` counts the frames written; ``frame`` indexes the source video (and
          ``frame_names`` when known).
        * ``"overlay"``: ``overlay.mp4``, the video's frames with masks tinted in palette colours. It
          needs the frames again: ``video`` (a folder, file or list) or the one ``predict`` read.

        ``{frame}`` is the source frame's file stem when the video was a folder of frames, else the
        frame index as ``%05d``.
        """
        writers: dict[str, Callable[[Path], Path]] = {
            "davis": self._save_davis,
            "per-object": lambda target: self._save_per_object(target, object_names or self.object_names),
            "coco-rle": self._save_coco_rle,
            "overlay": lambda target: self._save_overlay(target, fps, video),
        }
        if format not in writers:
            raise InputError(
                f"unknown VideoResult format {format!r}; choose one of {', '.join(VIDEO_FORMATS)}"
            )
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        return writers[format](directory)

    def _checked(self, frames: Iterator[Any]) -> Iterator[FrameResult]:
        for frame in frames:
            if not isinstance(frame, FrameResult):
                raise InputError(f"a VideoResult must yield FrameResult objects, got {type(frame).__name__}")
            shape = frame.shape
            if shape is not None:
                if self.height is None or self.width is None:
                    self.height, self.width = shape
                elif shape != (self.height, self.width):
                    raise InputError(
                        f"frame {frame.frame_idx} has masks of shape {shape}, expected ({self.height}, {self.width})"
                    )
            yield frame

    def _frame_name(self, frame_idx: int) -> str:
        if self.frame_names is None:
            return f"{frame_idx:05d}"
        if frame_idx >= len(self.frame_names):
            raise InputError(
                f"frame {frame_idx} has no name: the source video names {len(self.frame_names)} frames"
            )
        return self.frame_names[frame_idx]

    def _shape(self) -> tuple[int, int] | None:
        return None if self.height is None or self.width is None else (self.height, self.width)

    def _save_davis(self, directory: Path) -> Path:
        for frame in self:
            write_palette_png(
                directory / f"{self._frame_name(frame.frame_idx)}.png", frame.label_map(self._shape())
            )
        return directory

    def _save_per_object(self, directory: Path, object_names: Mapping[int, str] | None) -> Path:
        object_names = object_names or {}
        for frame in self:
            name = self._frame_name(frame.frame_idx)
            for obj_id, mask in frame.masks.items():
                folder = object_names.get(obj_id, f"{obj_id:03d}")
                write_binary_png(directory / folder / f"{name}.png", mask)
        return directory

    def _save_coco_rle(self, directory: Path) -> Path:
        frames_written = 0
        with atomic_open(directory / COCO_RLE_FILE, "w", encoding="utf-8") as handle:
            handle.write('{"annotations": [')
            separator = ""
            for frame in self:
                frames_written += 1
                for obj_id in frame.obj_ids:
                    score = frame.scores.get(obj_id)
                    annotation = {
                        "frame": frame.frame_idx,
                        "obj_id": obj_id,
                        "score": score,
                        "segmentation": masks_to_rle(frame.masks[obj_id]),
                    }
                    handle.write(separator + json.dumps(annotation))
                    separator = ", "
            video = {
                "height": self.height,
                "width": self.width,
                "num_frames": frames_written,
                "fps": self.fps,
                "frame_names": self.frame_names,
            }
            handle.write(f'], "video": {json.dumps(video)}}}')
        return directory

    def _save_overlay(self, directory: Path, fps: float | None, video: Any) -> Path:
        from samkit.io.video import IterableVideo, VideoSource, open_video

        source = video if video is not None else self.video
        if source is None:
            raise InputError(
                "format='overlay' needs the video frames: pass save(..., video=<folder, file or list of frames>)"
            )
        opened = open_video(source)
        try:
            if isinstance(opened, IterableVideo):
                raise InputError(
                    "format='overlay' must read the frames again, which a one-shot iterable (generator) cannot; "
                    "pass save(..., video=<folder, file or list of frames>)"
                )
            rate = fps or self.fps or opened.fps or DEFAULT_OVERLAY_FPS
            with VideoOverlayWriter(directory / OVERLAY_FILE, rate, opened.width, opened.height) as writer:
                for frame in self:
                    writer.write(overlay_masks(opened[frame.frame_idx], frame.masks))
        finally:
            if not isinstance(source, VideoSource):
                opened.close()
        return directory
