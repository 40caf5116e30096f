"""Mask overlays on images and the atomic mp4 overlay writer."""

import os

import av
import numpy as np
import pytest

from samkit import InputError
from samkit.io.overlay import VideoOverlayWriter, overlay_masks


class Boom(RuntimeError):
    pass


def gray_image(height=6, width=8, value=100):
    return np.full((height, width, 3), value, np.uint8)


def test_overlay_blends_palette_colour_inside_masks_only():
    image = gray_image()
    mask = np.zeros((6, 8), bool)
    mask[1:3, 2:5] = True
    out = overlay_masks(image, {1: mask}, alpha=0.5)
    # object 1 is (128, 0, 0): 0.5 * 100 + 0.5 * (128, 0, 0) = (114, 50, 50)
    assert out[mask].tolist() == [[114, 50, 50]] * int(mask.sum())
    assert np.array_equal(out[~mask], image[~mask])
    assert np.array_equal(image, gray_image())  # input untouched


def test_overlay_of_mask_array_uses_ids_one_to_n_and_higher_id_on_top():
    image = gray_image(1, 3, value=0)
    masks = np.array([[[1, 1, 0]], [[0, 1, 1]]], bool)
    out = overlay_masks(image, masks, alpha=1.0)
    assert out[0].tolist() == [[128, 0, 0], [0, 128, 0], [0, 128, 0]]


def test_overlay_alpha_extremes_and_errors():
    image = gray_image()
    mask = np.ones((6, 8), bool)
    assert np.array_equal(overlay_masks(image, {3: mask}, alpha=0.0), image)
    assert np.array_equal(overlay_masks(image, {3: mask}, alpha=1.0)[0, 0], [128, 128, 0])
    with pytest.raises(InputError, match="alpha"):
        overlay_masks(image, {1: mask}, alpha=1.5)
    with pytest.raises(InputError, match=r"\(6, 8\)"):
        overlay_masks(image, {1: np.ones((5, 8), bool)})
    with pytest.raises(InputError, match="positive"):
        overlay_masks(image, {0: mask})


def read_mp4(path):
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def test_writer_round_trip_frame_count_size_and_colours(tmp_path):
    path = tmp_path / "out.mp4"
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    with VideoOverlayWriter(path, fps=12, width=32, height=24) as writer:
        for colour in colours:
            writer.write(np.full((24, 32, 3), colour, np.uint8))
    frames = read_mp4(path)
    assert len(frames) == 3
    for frame, colour in zip(frames, colours):
        assert frame.shape == (24, 32, 3)
        assert np.abs(frame.reshape(-1, 3).mean(axis=0) - colour).max() < 6
    assert os.listdir(tmp_path) == ["out.mp4"]


def test_writer_pads_odd_sizes_to_even(tmp_path):
    path = tmp_path / "odd.mp4"
    with VideoOverlayWriter(path, fps=5, width=31, height=17) as writer:
        writer.write(np.full((17, 31, 3), 180, np.uint8))
    frames = read_mp4(path)
    assert len(frames) == 1 and frames[0].shape == (18, 32, 3)
    assert np.abs(frames[0].astype(int) - 180).max() < 6  # padding repeats the edge


def test_writer_failure_leaves_nothing(tmp_path):
    path = tmp_path / "out.mp4"
    path.write_bytes(b"old")
    with pytest.raises(Boom), VideoOverlayWriter(path, fps=10, width=16, height=16) as writer:
        writer.write(np.zeros((16, 16, 3), np.uint8))
        raise Boom()
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.mp4"]


def test_writer_rejects_bad_frames_and_empty_videos(tmp_path):
    with (
        pytest.raises(InputError, match="frame 1"),
        VideoOverlayWriter(tmp_path / "a.mp4", fps=10, width=16, height=16) as writer,
    ):
        writer.write(np.zeros((16, 16, 3), np.uint8))
        writer.write(np.zeros((16, 15, 3), np.uint8))
    with (
        pytest.raises(InputError, match="no frames"),
        VideoOverlayWriter(tmp_path / "b.mp4", fps=10, width=16, height=16),
    ):
        pass
    assert os.listdir(tmp_path) == []
    with pytest.raises(InputError, match="fps"):
        VideoOverlayWriter(tmp_path / "c.mp4", fps=0, width=16, height=16)
    with pytest.raises(InputError, match="width"):
        VideoOverlayWriter(tmp_path / "c.mp4", fps=10, width=0, height=16)
