"""Helpers shared by several test modules (pytest puts this folder on ``sys.path``)."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image

from samkit.backbones.tiny import build_tiny_sam2
from samkit.io.video_file import FileVideo
from samkit.samples import synthetic_video

CLIP_FRAMES = 8
CLIP_HEIGHT, CLIP_WIDTH = 96, 128


def write_video(path: Path, frames: Iterable[np.ndarray], codec: str = "libx264", options: dict | None = None,
                gop: int = 5, fps: int = 10) -> Path:
    """Encode uint8 RGB frames (all one size) as yuv420p into the container that ``path``'s suffix names."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps, options=options or {})
        for index, frame in enumerate(frames):
            if index == 0:
                stream.height, stream.width = frame.shape[:2]
                stream.pix_fmt = "yuv420p"
                stream.codec_context.gop_size = gop
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def count_decodes(monkeypatch) -> list[int]:
    """A list holding the number of frames ``FileVideo`` has decoded so far (updated in place)."""
    decoded = [0]
    original = FileVideo._decode

    def counting(container):
        for frame in original(container):
            decoded[0] += 1
            yield frame

    monkeypatch.setattr(FileVideo, "_decode", staticmethod(counting))
    return decoded


class Crash(RuntimeError):
    """Raised by a task made with :func:`crash_at`, as if the process died there."""


def crash_at(task, step: int):
    """``task`` whose ``step``-th training step raises :class:`Crash` (1-based)."""
    calls = [0]
    training_step = task.training_step

    def crashing(model, batch):
        calls[0] += 1
        if calls[0] == step:
            raise Crash
        return training_step(model, batch)

    task.training_step = crashing
    return task


def tiny_clip(folder: Path):
    """(synthetic video, its JPEG folder, a tiny random SAM 2 video model) for the long-video tests."""
    torch.manual_seed(0)
    video = synthetic_video(num_frames=CLIP_FRAMES, height=CLIP_HEIGHT, width=CLIP_WIDTH, seed=1)
    for index, frame in enumerate(video.frames):
        Image.fromarray(frame).save(folder / f"{index:05d}.jpg")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_tiny_sam2(seed=0, video=True)
    return video, str(folder), model
