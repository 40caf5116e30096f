"""Video results: ``FrameResult`` (the masks of one frame) and the streaming ``VideoResult``.

Masks are bool (H, W) at the video's resolution; object ids are positive ints, 0 is background. The
writers behind ``VideoResult.save`` live in ``samkit.results.writers``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from samkit.errors import InputError
from samkit.io.masks import as_bool_mask, labels_from_masks
from samkit.results.image import check_obj_id
from samkit.results.writers import (
    VIDEO_FORMATS,
    check_object_names,
    write_coco_rle,
    write_davis,
    write_overlay,
    write_per_object,
)

if TYPE_CHECKING:
    from typing_extensions import Self


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
            obj_id = check_obj_id(obj_id, owner)
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

    When the stream ends (or on ``close()``, or leaving a ``with`` block) the result releases the
    video's file handle; ``close()`` also stops a stream that is still running.
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
        self._stream: Generator[FrameResult, None, None] | None = None
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
        self.object_names = check_object_names(object_names) if object_names is not None else None

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
        self._stream = self._checked(iter(self._frames))
        return self._stream

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the stream if it is still running (the model stops with it) and release the video's
        file handle. Idempotent; collected frames stay readable."""
        if self._collected is None:
            self._consumed = True
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()
        elif self._collected is None:
            close_frames = getattr(self._frames, "close", None)
            if callable(close_frames):
                close_frames()
        self._release_video()

    def with_progress(self, description: str, position: int = 0) -> VideoResult:
        """The same frames, drawing a progress bar (per frame, of ``num_frames`` when known) as they stream."""
        return VideoResult(
            self._with_bar(description, position),
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
          ground-truth folder names, SA-V's start at ``000``; a plain folder name, no path), else
          ``{obj_id:03d}``.
        * ``"coco-rle"``: one ``masks.json``::

              {"annotations": [{"frame": int, "obj_id": int, "score": float | null,
                                "segmentation": {"size": [H, W], "counts": str}}, ...],
               "video": {"height": int, "width": int, "num_frames": int, "fps": float | null,
                         "frame_names": [str, ...] | null}}

          ``num_frames`` counts the frames written; ``frame`` indexes the source video (and
          ``frame_names`` when known).
        * ``"overlay"``: ``overlay.mp4``, the video's frames with masks tinted in palette colours, in
          time order (also for a reverse run). It needs the frames again: ``video`` (a folder, file or
          list) or the one ``predict`` read.

        ``{frame}`` is the source frame's file stem when the video was a folder of frames, else the
        frame index as ``%05d``.
        """
        writers: dict[str, Callable[[Path], Path]] = {
            "davis": lambda target: write_davis(self, target),
            "per-object": lambda target: write_per_object(self, target, names),
            "coco-rle": lambda target: write_coco_rle(self, target),
            "overlay": lambda target: write_overlay(self, target, fps, video),
        }
        if format not in writers:
            raise InputError(
                f"unknown VideoResult format {format!r}; choose one of {', '.join(VIDEO_FORMATS)}"
            )
        names = check_object_names(object_names) if object_names is not None else (self.object_names or {})
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        return writers[format](directory)

    @property
    def shape(self) -> tuple[int, int] | None:
        """(H, W) of the masks, when known (from the video or from the frames read so far)."""
        return None if self.height is None or self.width is None else (self.height, self.width)

    def frame_name(self, frame_idx: int) -> str:
        """The file stem of frame ``frame_idx`` in the writers' outputs."""
        if self.frame_names is None:
            return f"{frame_idx:05d}"
        if frame_idx >= len(self.frame_names):
            raise InputError(
                f"frame {frame_idx} has no name: the source video names {len(self.frame_names)} frames"
            )
        return self.frame_names[frame_idx]

    def _checked(self, frames: Iterator[Any]) -> Generator[FrameResult, None, None]:
        try:
            for frame in frames:
                if not isinstance(frame, FrameResult):
                    raise InputError(
                        f"a VideoResult must yield FrameResult objects, got {type(frame).__name__}"
                    )
                shape = frame.shape
                if shape is not None:
                    if self.height is None or self.width is None:
                        self.height, self.width = shape
                    elif shape != (self.height, self.width):
                        raise InputError(
                            f"frame {frame.frame_idx} has masks of shape {shape}, expected "
                            f"({self.height}, {self.width})"
                        )
                yield frame
        finally:
            close_source = getattr(frames, "close", None)
            if callable(close_source):
                close_source()
            self._release_video()

    def _with_bar(self, description: str, position: int) -> Generator[FrameResult, None, None]:
        from tqdm.auto import tqdm

        frames = iter(self)
        bar = tqdm(desc=description, total=self.num_frames, unit="frame", position=position, leave=False)
        try:
            for frame in frames:
                bar.update()
                yield frame
        finally:
            bar.close()
            frames.close()

    def _release_video(self) -> None:
        release = getattr(self.video, "release", None)
        if callable(release):
            release()
