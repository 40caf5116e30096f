"""Small synthetic samples with ground truth, for the demo, examples and tests (no download needed)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BACKGROUND_RGB = (40, 44, 52)
OBJECT_COLOURS = {1: (220, 60, 50), 2: (60, 120, 230)}


@dataclass(frozen=True)
class SyntheticVideo:
    """Frames (T, H, W, 3) uint8 and per-object ground-truth masks ``{obj_id: (T, H, W) bool}``."""

    frames: np.ndarray
    masks: dict[int, np.ndarray]

    @property
    def num_frames(self) -> int:
        return self.frames.shape[0]

    def label_maps(self) -> np.ndarray:
        """(T, H, W) uint8 label maps: later-drawn (occluding) objects win, as they do in the frames."""
        labels = np.zeros(self.frames.shape[:3], dtype=np.uint8)
        for obj_id in sorted(self.masks):
            labels[self.masks[obj_id]] = obj_id
        return labels


def _disk(height: int, width: int, centre: tuple[float, float], radius: float) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width]
    return (ys - centre[0]) ** 2 + (xs - centre[1]) ** 2 <= radius**2


def _square(height: int, width: int, centre: tuple[float, float], half: float) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width]
    return (np.abs(ys - centre[0]) <= half) & (np.abs(xs - centre[1]) <= half)


def synthetic_video(num_frames: int = 24, height: int = 120, width: int = 160, seed: int = 0) -> SyntheticVideo:
    """Two objects on a textured background: a red disk moving right, a blue square moving left that
    passes in front of it (an occlusion halfway through the clip)."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(-12, 13, size=(height, width, 3))
    base = np.clip(np.asarray(BACKGROUND_RGB) + texture, 0, 255).astype(np.uint8)
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    masks = {obj_id: np.zeros((num_frames, height, width), dtype=bool) for obj_id in OBJECT_COLOURS}
    radius, half = 0.16 * height, 0.13 * height
    for t in range(num_frames):
        progress = t / max(num_frames - 1, 1)
        disk = _disk(height, width, (0.5 * height, (0.2 + 0.6 * progress) * width), radius)
        square = _square(height, width, (0.55 * height, (0.8 - 0.6 * progress) * width), half)
        frame = base.copy()
        frame[disk] = OBJECT_COLOURS[1]
        frame[square] = OBJECT_COLOURS[2]
        frames[t] = frame
        masks[1][t] = disk & ~square
        masks[2][t] = square
    return SyntheticVideo(frames=frames, masks=masks)


def synthetic_image(height: int = 120, width: int = 160, seed: int = 0) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """The first frame of ``synthetic_video`` and its object masks."""
    video = synthetic_video(num_frames=1, height=height, width=width, seed=seed)
    return video.frames[0], {obj_id: mask[0] for obj_id, mask in video.masks.items()}
