"""Video files (mp4, mov, avi, mkv, webm...) decoded lazily with PyAV, with keyframe seeking.

The frame count is known on opening for every container: from the stream header when it states one
(mp4, mov), else by demuxing the packets once without decoding them (mkv and webm do not state it).
"""

from __future__ import annotations

import bisect
import inspect
import os
import weakref
from collections import OrderedDict
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from samkit.errors import InputError
from samkit.io.video_source import FrameIndexError, VideoSource

DEFAULT_CACHE_FRAMES = 16
"""Decoded frames a ``FileVideo`` keeps for random access (reverse reads cost one GOP per this many frames)."""


@dataclass
class PacketIndex:
    """Presentation timestamps of a video stream's frames, from demuxing (no decoding)."""

    pts: list[int]
    keyframes: list[int]
    index_of_pts: dict[int, int]
    seekable: bool

    @property
    def count(self) -> int:
        """Number of frames: one packet per frame."""
        return len(self.pts)

    def keyframe_at_or_before(self, index: int) -> int:
        position = bisect.bisect_right(self.keyframes, index) - 1
        return self.keyframes[position] if position >= 0 else 0


class FileVideo(VideoSource):
    """A video file decoded with PyAV (mp4, mov, avi, mkv, webm...).

    ``num_frames`` is known on construction. Iteration decodes front to back with its own file
    handle, closed when the iteration ends. Random access seeks to the keyframe at or before the
    wanted frame and decodes forward, keeping the last ``cache_frames`` decoded frames, so forward
    reads never seek and reverse reads cost one decode per ``cache_frames`` frames. Frame ``i`` is
    the ``i``-th frame in presentation order.

    ``release()`` closes the random-access file handle and drops the cache; ``close()`` also ends
    running iterations. Reading again afterwards reopens the file. ``fork()`` gives an independent
    reader of the same file.
    """

    def __init__(self, path: str | os.PathLike[str], cache_frames: int = DEFAULT_CACHE_FRAMES) -> None:
        self.path = Path(path)
        if cache_frames < 1:
            raise InputError(f"cache_frames must be >= 1, got {cache_frames}")
        self._cache_frames = cache_frames
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._packets: PacketIndex | None = None
        self._container: Any = None
        self._iterations: weakref.WeakSet[Generator[np.ndarray, None, None]] = weakref.WeakSet()
        self._attach(self._open())
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps = float(rate) if rate else None
        self._declared_frames = int(self._stream.frames) or None
        self.height, self.width = self._stream.codec_context.height, self._stream.codec_context.width
        if not (self.height and self.width):
            self.close()
            raise InputError(f"{self.path}: the video stream does not state its frame size")
        try:
            self._frame(0)
            if self._declared_frames is None:
                self._packet_index()
        except FrameIndexError:
            self.close()
            raise InputError(f"{self.path} has no decodable video frames") from None
        except InputError:
            self.close()
            raise

    @property
    def num_frames(self) -> int:
        if self._declared_frames is not None:
            return self._declared_frames
        return self._packet_index().count

    @property
    def closed(self) -> bool:
        """True when no file handle is open (after ``close()`` or before the first read of a fork)."""
        suspended = (inspect.getgeneratorstate(iteration) == inspect.GEN_SUSPENDED for iteration in self._iterations)
        return self._container is None and not any(suspended)

    def describe(self) -> str:
        return str(self.path)

    def close(self) -> None:
        for iteration in list(self._iterations):
            iteration.close()
        self.release()

    def release(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container = self._decoder = None
        self._position = -1
        self._cache.clear()

    def fork(self) -> FileVideo:
        """A second reader of this file with its own decoder and cache; nothing is re-read to make it."""
        twin = object.__new__(FileVideo)
        twin.__dict__.update(self.__dict__)
        twin._cache = OrderedDict()
        twin._iterations = weakref.WeakSet()
        twin._container = twin._decoder = None
        twin._position = -1
        return twin

    def __iter__(self) -> Iterator[np.ndarray]:
        iteration = self._iterate()
        self._iterations.add(iteration)
        return iteration

    def __getitem__(self, index: int) -> np.ndarray:
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

    @staticmethod
    def _decode(container: Any) -> Iterator[Any]:
        """Decoded frames of the first video stream of ``container`` (the one place frames are decoded)."""
        return container.decode(container.streams.video[0])

    def _iterate(self) -> Generator[np.ndarray, None, None]:
        import av

        container = self._open()
        try:
            container.streams.video[0].thread_type = "AUTO"
            decoder = self._decode(container)
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

    def _attach(self, container: Any) -> None:
        """Use ``container`` for random access, decoding from the first frame and counting frames."""
        self._container = container
        self._stream = container.streams.video[0]
        self._decoder: Iterator[Any] | None = self._decode(container)
        self._position: int = -1
        self._counting = True

    def _restart(self) -> None:
        if self._container is not None:
            self._container.close()
        self._attach(self._open())

    def _frame(self, index: int) -> np.ndarray:
        cached = self._cache.get(index)
        if cached is not None:
            self._cache.move_to_end(index)
            return cached
        if self._container is None:
            self._attach(self._open())
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
        self._decoder = self._decode(self._container)
        self._position = keyframe - 1
        self._counting = False

    def _decode_to(self, target: int) -> np.ndarray:
        import av

        keep_from = target - self._cache_frames + 1
        while True:
            try:
                frame = next(self._decoder)
            except StopIteration:
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

    def _packet_index(self) -> PacketIndex:
        if self._packets is None:
            self._packets = self._read_packet_index()
        return self._packets

    def _read_packet_index(self) -> PacketIndex:
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
            return PacketIndex(pts=[0] * len(entries), keyframes=[0], index_of_pts={}, seekable=False)
        entries.sort(key=lambda entry: entry[0])
        pts = [entry[0] for entry in entries]
        keyframes = [index for index, (_, is_keyframe) in enumerate(entries) if is_keyframe] or [0]
        return PacketIndex(
            pts=pts,
            keyframes=keyframes,
            index_of_pts={value: index for index, value in enumerate(pts)},
            seekable=True,
        )
