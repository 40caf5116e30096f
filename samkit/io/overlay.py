"""Visual overlays: masks tinted onto images in their palette colours, and an mp4 writer for videos."""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from samkit.errors import InputError
from samkit.io.atomic import atomic_path
from samkit.io.images import ImageInput, load_image
from samkit.io.masks import as_bool_mask, palette_colour

if TYPE_CHECKING:
    from typing_extensions import Self

MaskInput = Mapping[int, np.ndarray] | np.ndarray

DEFAULT_ALPHA = 0.5
OVERLAY_CODECS = ("libx264", "libopenh264", "mpeg4")
"""Encoders tried in order; the first one this PyAV build has is used."""
PIXEL_FORMAT = "yuv420p"
MPEG4_BITS_PER_PIXEL = 0.3
"""Bit budget for the ``mpeg4`` fallback, whose default bit rate is too low for sharp mask edges."""
MAX_RATE_DENOMINATOR = 1001
"""Frame rates become fractions with at most this denominator (29.97 -> 30000/1001)."""


def overlay_masks(image: ImageInput, masks: MaskInput, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """Tint each object's pixels with its palette colour: ``(1 - alpha) * image + alpha * colour``.

    ``masks`` is ``{obj_id: bool (H, W)}`` or a bool (N, H, W) array (objects 1..N). Where masks
    overlap the higher object id is drawn on top. Returns a new RGB uint8 (H, W, 3) array.
    """
    if not (isinstance(alpha, (int, float)) and 0.0 <= alpha <= 1.0):
        raise InputError(f"alpha must be a number in [0, 1], got {alpha!r}")
    rgb = load_image(image)
    height, width = rgb.shape[:2]
    colours = np.zeros((height, width, 3), dtype=np.float32)
    painted = np.zeros((height, width), dtype=bool)
    for obj_id, mask in sorted(_object_masks(masks).items()):
        mask = as_bool_mask(mask, f"mask of object {obj_id}", (height, width))
        colours[mask] = palette_colour(obj_id)
        painted |= mask
    blended = rgb.astype(np.float32)
    blended[painted] = (1.0 - alpha) * blended[painted] + alpha * colours[painted]
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def _object_masks(masks: MaskInput) -> Mapping[int, np.ndarray]:
    if isinstance(masks, Mapping):
        for obj_id in masks:
            if (
                isinstance(obj_id, (bool, np.bool_))
                or not isinstance(obj_id, (int, np.integer))
                or obj_id < 1
            ):
                raise InputError(f"object ids must be positive ints, got {obj_id!r}")
        return masks
    array = np.asarray(masks)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise InputError(
            f"masks must be a dict of (H, W) masks or an (N, H, W) array, got shape {array.shape}"
        )
    return {index + 1: array[index] for index in range(array.shape[0])}


def _even(size: int) -> int:
    return size + size % 2


class VideoOverlayWriter:
    """Write RGB frames to an mp4 (H.264 when available, else MPEG-4 Part 2), atomically.

    ``yuv420p`` needs even frame sizes, so an odd height or width is padded by repeating the last
    row / column: the file is then ``even(width) x even(height)``. The file appears at ``path`` only
    when the ``with`` block ends without an exception and at least one frame was written.

        with VideoOverlayWriter("out.mp4", fps=24, width=w, height=h) as writer:
            for frame in frames:
                writer.write(frame)
    """

    def __init__(self, path: str | os.PathLike[str], fps: float, width: int, height: int) -> None:
        if not (isinstance(fps, (int, float, Fraction)) and math.isfinite(fps) and fps > 0):
            raise InputError(f"fps must be a positive number, got {fps!r}")
        for name, size in (("width", width), ("height", height)):
            if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
                raise InputError(f"{name} must be a positive int, got {size!r}")
        self.path = Path(path)
        self.fps = Fraction(fps).limit_denominator(MAX_RATE_DENOMINATOR)
        self.width, self.height = int(width), int(height)
        self.frames_written = 0
        self._exit_stack: contextlib.ExitStack | None = None
        self._container: Any = None
        self._stream: Any = None

    def __enter__(self) -> Self:
        import av

        with contextlib.ExitStack() as stack:
            temporary = stack.enter_context(atomic_path(self.path))
            self._container = av.open(str(temporary), mode="w")
            stack.callback(self._container.close)
            codec = _pick_codec()
            self._stream = self._container.add_stream(codec, rate=self.fps)
            self._stream.width, self._stream.height = _even(self.width), _even(self.height)
            self._stream.pix_fmt = PIXEL_FORMAT
            if codec == "mpeg4":
                pixels_per_second = self._stream.width * self._stream.height * float(self.fps)
                self._stream.bit_rate = int(pixels_per_second * MPEG4_BITS_PER_PIXEL)
            self._exit_stack = stack.pop_all()
        return self

    def write(self, frame: np.ndarray) -> None:
        """Append one RGB uint8 (height, width, 3) frame."""
        import av

        if self._stream is None:
            raise RuntimeError("VideoOverlayWriter.write must be called inside its 'with' block")
        frame = np.asarray(frame)
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise InputError(
                f"overlay frame {self.frames_written} must be uint8 ({self.height}, {self.width}, 3), "
                f"got {frame.dtype} {frame.shape}"
            )
        padding = ((0, self._stream.height - self.height), (0, self._stream.width - self.width), (0, 0))
        if any(after for _, after in padding):
            frame = np.pad(frame, padding, mode="edge")
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)
        self.frames_written += 1

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        stack, self._exit_stack = self._exit_stack, None
        if exc_type is None:
            try:
                self._finish()
            except BaseException:
                if not stack.__exit__(*sys.exc_info()):
                    raise
                return False
        return bool(stack.__exit__(exc_type, exc, traceback))

    def _finish(self) -> None:
        if self.frames_written == 0:
            raise InputError(f"no frames were written to {self.path}; an overlay video needs at least one")
        for packet in self._stream.encode():
            self._container.mux(packet)


def _pick_codec() -> str:
    import av

    for name in OVERLAY_CODECS:
        try:
            av.codec.Codec(name, "w")
        except (av.FFmpegError, ValueError):
            continue
        return name
    raise InputError(
        f"this PyAV build has none of the video encoders {OVERLAY_CODECS}; install the 'av' wheel"
    )
