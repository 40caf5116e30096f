"""Lazy video sources: a folder of frames, a video file, a list of frames, or any iterable.

``open_video`` turns any of these into a ``VideoSource`` that yields RGB uint8 (H, W, 3) frames one
at a time, so memory use does not grow with the video's length. Folders, lists and files also
support random access (``video[i]``); a one-shot iterable (a generator) does not.
"""

from __future__ import annotations

import abc
import bisect
import os
import re
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
from PIL import Image

from samkit.errors import InputError
from samkit.io.images import load_image, read_image_file, read_image_size

if TYPE_CHECKING:
    from typing_extensions import Self

VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png")
DEFAULT_CACHE_FRAMES = 16
"""Decoded frames a ``FileVideo`` keeps for random access (reverse reads cost one GOP per this many frames)."""

VideoInput = Union[str, os.PathLike, Sequence[Any], Iterable[Any], "VideoSource"]


class UnknownLengthError(InputError, TypeError):
    """``len()`` of a video whose frame count is not known up front (a generator)."""


class FrameIndexError(InputError, IndexError):
    """A frame index outside the video."""


def natural_sort_key(name: str) -> tuple[tuple[Any, ...], str]:
    """Sort key comparing digit runs as numbers, so ``2.png`` < ``10.png`` and ``frame_9`` < ``frame_12``."""
    parts = re.split(r"(\d+)", name)
    return tuple(int(part) if position % 2 else part for position, part in enumerate(parts)), name


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

    def close(self) -> None:
        """Release open files; the default source holds none."""

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


@dataclass
class _PacketIndex:
    """Presentation timestamps of a video stream's frames, from demuxing (no decoding)."""

    pts: list[int]
    keyframes: list[int]
    index_of_pts: dict[int, int]
    seekable: bool

    def keyframe_at_or_before(self, index: int) -> int:
        position = bisect.bisect_right(self.keyframes, index) - 1
        return self.keyframes[position] if position >= 0 else 0


class FileVideo(VideoSource):
    """A video file decoded with PyAV (mp4, mov, avi, mkv...).

    Iteration decodes front to back with its own file handle. Random access seeks to the keyframe at
    or before the wanted frame and decodes forward, keeping the last ``cache_frames`` decoded frames,
    so forward reads never seek and reverse reads cost one decode per ``cache_frames`` frames.
    Frame ``i`` is the ``i``-th frame in presentation order.
    """

    def __init__(self, path: str | os.PathLike[str], cache_frames: int = DEFAULT_CACHE_FRAMES) -> None:
        self.path = Path(path)
        if cache_frames < 1:
            raise InputError(f"cache_frames must be >= 1, got {cache_frames}")
        self._cache_frames = cache_frames
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._packets: _PacketIndex | None = None
        self._counted_frames: int | None = None
        self._container = self._open()
        self._stream = self._container.streams.video[0]
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps = float(rate) if rate else None
        self._declared_frames = int(self._stream.frames) or None
        self.height, self.width = self._stream.codec_context.height, self._stream.codec_context.width
        if not (self.height and self.width):
            self.close()
            raise InputError(f"{self.path}: the video stream does not state its frame size")
        self._start_decoder()
        try:
            self._frame(0)
        except FrameIndexError:
            self.close()
            raise InputError(f"{self.path} has no decodable video frames") from None
        except InputError:
            self.close()
            raise

    @property
    def num_frames(self) -> int | None:
        if self._declared_frames is not None:
            return self._declared_frames
        if self._counted_frames is not None:
            return self._counted_frames
        return len(self._packets.pts) if self._packets is not None else None

    def __len__(self) -> int:
        if self.num_frames is None:
            self._packet_index()
        return super().__len__()

    def describe(self) -> str:
        return str(self.path)

    def close(self) -> None:
        self._container.close()
        self._cache.clear()

    def __iter__(self) -> Iterator[np.ndarray]:
        return self._iterate(self._open())

    def __getitem__(self, index: int) -> np.ndarray:
        if isinstance(index, (int, np.integer)) and index >= 0 and self.num_frames is None:
            return self._frame(int(index)).copy()
        return self._frame(self._checked_index(index)).copy()

    def _open(self) -> Any:
        import av

        if not self.path.is_file():
            raise InputError(f"video file not found: {self.path}")
        try:
            container = av.open(str(self.path))
        except (av.FFmpegError, OSError) as error:
            raise InputError(f"cannot open video file {self.path}: {error}") from None
        if not container.streams.video:
            container.close()
            raise InputError(f"{self.path} has no video stream")
        return container

    def _iterate(self, container: Any) -> Iterator[np.ndarray]:
        import av

        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            decoder = container.decode(stream)
            index = 0
            while True:
                try:
                    frame = next(decoder)
                except StopIteration:
                    return
                except av.FFmpegError as error:
                    raise InputError(f"{self.path}: cannot decode frame {index}: {error}") from None
                yield self._to_rgb(frame, index)
                index += 1
        finally:
            container.close()

    def _to_rgb(self, frame: Any, index: int) -> np.ndarray:
        return self._check_size(frame.to_ndarray(format="rgb24"), f"frame {index} of {self.path}")

    def _start_decoder(self) -> None:
        """Decode from the first frame, counting frames (no timestamps needed)."""
        self._decoder: Iterator[Any] | None = self._container.decode(self._stream)
        self._position: int = -1
        self._counting = True

    def _restart(self) -> None:
        self._container.close()
        self._container = self._open()
        self._stream = self._container.streams.video[0]
        self._start_decoder()

    def _frame(self, index: int) -> np.ndarray:
        cached = self._cache.get(index)
        if cached is not None:
            self._cache.move_to_end(index)
            return cached
        if not self._can_continue_to(index):
            self._reposition(index)
        return self._decode_to(index)

    def _can_continue_to(self, index: int) -> bool:
        if self._decoder is None or self._position >= index:
            return False
        if index == self._position + 1:
            return True
        packets = self._packet_index()
        return not packets.seekable or packets.keyframe_at_or_before(index) <= self._position + 1

    def _reposition(self, index: int) -> None:
        packets = self._packet_index()
        if not packets.seekable:
            self._restart()
            return
        keyframe = packets.keyframe_at_or_before(index)
        self._container.seek(packets.pts[keyframe], stream=self._stream, backward=True)
        self._decoder = self._container.decode(self._stream)
        self._position = keyframe - 1
        self._counting = False

    def _decode_to(self, target: int) -> np.ndarray:
        import av

        keep_from = target - self._cache_frames + 1
        while True:
            try:
                frame = next(self._decoder)
            except StopIteration:
                if self._counting:
                    self._counted_frames = self._position + 1
                self._decoder = None
                raise FrameIndexError(f"frame {target} does not exist: {self.path} ends before it") from None
            except av.FFmpegError as error:
                raise InputError(f"{self.path}: cannot decode frame {self._position + 1}: {error}") from None
            index = self._position + 1 if self._counting else self._packets.index_of_pts.get(frame.pts)
            if index is None or index > target:
                # Timestamps do not match the demuxed packets (or the seek overshot): fall back to
                # decoding from the start and counting frames.
                self._packets.seekable = False
                self._restart()
                continue
            self._position = index
            if index >= keep_from:
                self._remember(index, self._to_rgb(frame, index))
            if index == target:
                return self._cache[index]

    def _remember(self, index: int, frame: np.ndarray) -> None:
        self._cache[index] = frame
        self._cache.move_to_end(index)
        while len(self._cache) > self._cache_frames:
            self._cache.popitem(last=False)

    def _packet_index(self) -> _PacketIndex:
        if self._packets is None:
            self._packets = self._read_packet_index()
        return self._packets

    def _read_packet_index(self) -> _PacketIndex:
        import av

        container = self._open()
        entries: list[tuple[int | None, bool]] = []
        try:
            for packet in container.demux(container.streams.video[0]):
                if packet.size == 0 or packet.is_discard:
                    continue
                entries.append((packet.pts, packet.is_keyframe))
        except av.FFmpegError as error:
            raise InputError(f"cannot read the packets of {self.path}: {error}") from None
        finally:
            container.close()
        timestamps = [pts for pts, _ in entries]
        if None in timestamps or len(set(timestamps)) != len(timestamps):
            return _PacketIndex(pts=[0] * len(entries), keyframes=[0], index_of_pts={}, seekable=False)
        entries.sort(key=lambda entry: entry[0])
        pts = [entry[0] for entry in entries]
        keyframes = [index for index, (_, is_keyframe) in enumerate(entries) if is_keyframe] or [0]
        return _PacketIndex(
            pts=pts,
            keyframes=keyframes,
            index_of_pts={value: index for index, value in enumerate(pts)},
            seekable=True,
        )


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
