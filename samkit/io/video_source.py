"""The ``VideoSource`` interface every video reader implements, and its errors.

A source yields RGB uint8 (H, W, 3) frames one at a time; ``samkit.io.video.open_video`` picks the
right one for a folder, a file, a list or an iterable.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from samkit.errors import InputError

if TYPE_CHECKING:
    from typing_extensions import Self


class UnknownLengthError(InputError, TypeError):
    """``len()`` of a video whose frame count is not known up front (a generator)."""


class FrameIndexError(InputError, IndexError):
    """A frame index outside the video."""


class VideoSource(abc.ABC):
    """Frames of one video, read lazily as RGB uint8 (H, W, 3) arrays.

    ``height`` / ``width`` are known on construction; ``num_frames`` and ``fps`` are ``None`` when the
    source cannot tell. ``frame_names`` holds the frame file stems of a folder (used to name output
    PNGs) and is ``None`` otherwise.
    """

    height: int
    width: int
    fps: float | None = None
    frame_names: list[str] | None = None

    @property
    def num_frames(self) -> int | None:
        return None

    @abc.abstractmethod
    def __iter__(self) -> Iterator[np.ndarray]:
        """Yield every frame in order."""

    def __getitem__(self, index: int) -> np.ndarray:
        raise InputError(
            f"{self.describe()} does not support random access (video[{index}]); "
            "pass a folder of frames, a video file or a list of frames instead"
        )

    def __len__(self) -> int:
        if self.num_frames is None:
            raise UnknownLengthError(
                f"the number of frames of {self.describe()} is not known until it has been read; "
                "iterate over it instead, or pass a folder, a video file or a list"
            )
        return self.num_frames

    def __bool__(self) -> bool:
        return True

    def describe(self) -> str:
        """A short human-readable name for messages."""
        return type(self).__name__

    def release(self) -> None:
        """Drop the file handles and cached frames of random access (idempotent); later reads reopen them.

        What a finished ``VideoResult`` calls: it frees the file without ending iterations that other
        code may be running over the same source.
        """

    def close(self) -> None:
        """Release every open file (idempotent). A source read again afterwards reopens what it needs."""
        self.release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.describe()!r}, num_frames={self.num_frames}, "
            f"height={self.height}, width={self.width}, fps={self.fps})"
        )

    def _checked_index(self, index: Any) -> int:
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise InputError(f"a frame index must be an int, got {index!r}")
        count = len(self)
        position = int(index) + count if index < 0 else int(index)
        if not 0 <= position < count:
            raise FrameIndexError(f"frame {index} does not exist: {self.describe()} has {count} frames")
        return position

    def _check_size(self, frame: np.ndarray, frame_name: str) -> np.ndarray:
        if frame.shape[:2] != (self.height, self.width):
            raise InputError(
                f"{frame_name} is {frame.shape[1]}x{frame.shape[0]} (WxH) but the video's first frame is "
                f"{self.width}x{self.height}; all frames of a video must have the same size"
            )
        return frame
