"""Lazy video sources: a folder of frames, a video file, a list of frames, or any iterable.

``open_video`` turns any of these into a ``VideoSource`` that yields RGB uint8 (H, W, 3) frames one
at a time, so memory use does not grow with the video's length. Folders, lists and files also
support random access (``video[i]``) and know their length up front; a one-shot iterable (a
generator) does neither. Video files are read by ``samkit.io.video_file.FileVideo``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image

from samkit.errors import InputError
from samkit.io.images import load_image, read_image_file, read_image_size
from samkit.io.video_file import DEFAULT_CACHE_FRAMES, FileVideo
from samkit.io.video_source import FrameIndexError, UnknownLengthError, VideoSource

__all__ = [
    "DEFAULT_CACHE_FRAMES",
    "FRAME_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "FileVideo",
    "FolderVideo",
    "FrameIndexError",
    "IterableVideo",
    "SequenceVideo",
    "UnknownLengthError",
    "VideoInput",
    "VideoSource",
    "natural_sort_key",
    "open_video",
]

VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png")

VideoInput = Union[str, os.PathLike, Sequence[Any], Iterable[Any], "VideoSource"]


def natural_sort_key(name: str) -> tuple[tuple[Any, ...], str]:
    """Sort key comparing digit runs as numbers, so ``2.png`` < ``10.png`` and ``frame_9`` < ``frame_12``."""
    parts = re.split(r"(\d+)", name)
    return tuple(int(part) if position % 2 else part for position, part in enumerate(parts)), name


class FolderVideo(VideoSource):
    """A folder of JPEG / PNG frames in natural numeric order (``00000.jpg``, ``frame_12.png``...).

    Files with other extensions and hidden files (``._00000.jpg``) are ignored.
    """

    def __init__(self, path: str | os.PathLike[str], fps: float | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise InputError(f"frame folder not found: {self.path}")
        frames = [
            entry
            for entry in self.path.iterdir()
            if entry.suffix.lower() in FRAME_EXTENSIONS and not entry.name.startswith(".") and entry.is_file()
        ]
        if not frames:
            raise InputError(f"{self.path} holds no {'/'.join(FRAME_EXTENSIONS)} frames")
        self.paths = sorted(frames, key=lambda entry: natural_sort_key(entry.stem))
        self.frame_names = [entry.stem for entry in self.paths]
        if len(set(self.frame_names)) != len(self.frame_names):
            clashes = sorted({name for name in self.frame_names if self.frame_names.count(name) > 1})
            raise InputError(
                f"{self.path} has several frames named {clashes} (e.g. both .jpg and .png); keep one"
            )
        self.height, self.width = read_image_size(self.paths[0])
        self.fps = fps

    @property
    def num_frames(self) -> int:
        return len(self.paths)

    def describe(self) -> str:
        return str(self.path)

    def __iter__(self) -> Iterator[np.ndarray]:
        for index in range(len(self.paths)):
            yield self._read(index)

    def __getitem__(self, index: int) -> np.ndarray:
        return self._read(self._checked_index(index))

    def _read(self, index: int) -> np.ndarray:
        path = self.paths[index]
        return self._check_size(read_image_file(path), f"frame {path}")


class SequenceVideo(VideoSource):
    """A list / tuple of frames (arrays, PIL images or paths) or a (T, H, W, 3) uint8 array."""

    def __init__(self, frames: Sequence[Any], fps: float | None = None) -> None:
        if len(frames) == 0:
            raise InputError("the frame list is empty; a video needs at least one frame")
        self._frames = frames
        self.fps = fps
        first = self._convert(0)
        self.height, self.width = first.shape[:2]

    @property
    def num_frames(self) -> int:
        return len(self._frames)

    def describe(self) -> str:
        return f"a list of {len(self._frames)} frames"

    def __iter__(self) -> Iterator[np.ndarray]:
        for index in range(len(self._frames)):
            yield self[index]

    def __getitem__(self, index: int) -> np.ndarray:
        position = self._checked_index(index)
        return self._check_size(self._convert(position), f"frame {position}")

    def _convert(self, index: int) -> np.ndarray:
        try:
            return load_image(self._frames[index])
        except InputError as error:
            raise InputError(f"frame {index}: {error}") from None


class IterableVideo(VideoSource):
    """Any iterable of frames (e.g. a generator): read once, front to back, without random access.

    The first frame is read on construction to learn the size.
    """

    def __init__(self, frames: Iterable[Any], fps: float | None = None) -> None:
        self._iterator = iter(frames)
        self.fps = fps
        try:
            first = next(self._iterator)
        except StopIteration:
            raise InputError("the frame iterable is empty; a video needs at least one frame") from None
        self._first: np.ndarray | None = self._convert(first, 0)
        self.height, self.width = self._first.shape[:2]
        self._consumed = False

    def describe(self) -> str:
        return "a one-shot frame iterable"

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._consumed:
            raise InputError(
                "this video is a one-shot iterable (e.g. a generator) and has already been read; "
                "pass a folder, a video file or a list of frames to read it more than once"
            )
        self._consumed = True
        return self._generate()

    def _generate(self) -> Iterator[np.ndarray]:
        first, self._first = self._first, None
        yield first
        for index, frame in enumerate(self._iterator, start=1):
            yield self._check_size(self._convert(frame, index), f"frame {index}")

    @staticmethod
    def _convert(frame: Any, index: int) -> np.ndarray:
        try:
            return load_image(frame)
        except InputError as error:
            raise InputError(f"frame {index}: {error}") from None


def open_video(source: VideoInput) -> VideoSource:
    """Open a folder of frames, a video file, a list of frames or an iterable of frames as a ``VideoSource``."""
    if isinstance(source, VideoSource):
        return source
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            return FolderVideo(path)
        if path.is_file():
            if path.suffix.lower() in VIDEO_EXTENSIONS:
                return FileVideo(path)
            raise InputError(
                f"{path} is not a video: give a folder of JPEG/PNG frames or a {'/'.join(VIDEO_EXTENSIONS)} file"
            )
        raise InputError(f"video not found: {path}")
    if isinstance(source, Image.Image) or (isinstance(source, np.ndarray) and source.ndim != 4):
        raise InputError(
            "a single image is not a video: give a folder, a video file, a list of frames "
            f"or a (T, H, W, 3) uint8 array (got {type(source).__name__})"
        )
    if isinstance(source, (list, tuple, np.ndarray)):
        return SequenceVideo(source)
    if isinstance(source, Iterable):
        return IterableVideo(source)
    raise InputError(
        f"cannot read a video from {type(source).__name__}: give a folder of frames, a video file, "
        "a list of frames or an iterable of frames"
    )
