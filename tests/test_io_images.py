"""load_image: paths, PIL images and numpy arrays become RGB uint8 (H, W, 3); bad input is an InputError."""

import numpy as np
import pytest
from PIL import Image

from samkit import InputError
from samkit.io.images import load_image, read_image_size

RNG = np.random.default_rng(0)


def random_rgb(height=7, width=5):
    return RNG.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def test_numpy_rgb_passes_through_unchanged():
    image = random_rgb()
    loaded = load_image(image)
    assert loaded.dtype == np.uint8 and loaded.shape == (7, 5, 3)
    assert np.array_equal(loaded, image)


def test_numpy_non_contiguous_view_is_made_contiguous():
    bgr = random_rgb()
    loaded = load_image(bgr[..., ::-1])
    assert loaded.flags.c_contiguous
    assert np.array_equal(loaded, bgr[..., ::-1])


def test_numpy_rgba_drops_alpha():
    rgba = RNG.integers(0, 256, size=(4, 6, 4), dtype=np.uint8)
    assert np.array_equal(load_image(rgba), rgba[..., :3])


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((4, 5), np.uint8), r"\(H, W, 3\)"),
        (np.zeros((4, 5, 2), np.uint8), r"\(H, W, 3\)"),
        (np.zeros((4, 5, 3), np.float32), "uint8"),
        (np.zeros((4, 5, 3), np.int64), "uint8"),
        (np.zeros((0, 5, 3), np.uint8), "empty"),
    ],
)
def test_bad_numpy_arrays_are_input_errors(array, message):
    with pytest.raises(InputError, match=message):
        load_image(array)


def test_unsupported_type_is_input_error():
    with pytest.raises(InputError, match="list"):
        load_image([[1, 2, 3]])


def test_png_path_round_trip_is_exact(tmp_path):
    image = random_rgb(9, 11)
    Image.fromarray(image).save(tmp_path / "a.png")
    assert np.array_equal(load_image(tmp_path / "a.png"), image)
    assert np.array_equal(load_image(str(tmp_path / "a.png")), image)


def test_grayscale_png_becomes_three_equal_channels(tmp_path):
    gray = RNG.integers(0, 256, size=(6, 8), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "g.png")
    loaded = load_image(tmp_path / "g.png")
    assert loaded.shape == (6, 8, 3)
    for channel in range(3):
        assert np.array_equal(loaded[..., channel], gray)


def test_rgba_png_drops_alpha(tmp_path):
    rgba = RNG.integers(0, 256, size=(5, 5, 4), dtype=np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    assert np.array_equal(load_image(tmp_path / "rgba.png"), rgba[..., :3])


def test_pil_palette_image_uses_palette_colours():
    indices = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    image = Image.fromarray(indices)
    image.putpalette([0, 0, 0, 10, 20, 30, 200, 100, 50] + [0] * (768 - 9))
    loaded = load_image(image)
    assert loaded.tolist() == [[[0, 0, 0], [10, 20, 30]], [[200, 100, 50], [10, 20, 30]]]


def test_jpeg_of_flat_colour_is_close(tmp_path):
    flat = np.zeros((16, 16, 3), np.uint8)
    flat[...] = (200, 40, 90)
    Image.fromarray(flat).save(tmp_path / "f.jpg", quality=95)
    loaded = load_image(tmp_path / "f.jpg")
    assert np.abs(loaded.astype(int) - flat).max() <= 3


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(InputError, match="nothere.png"):
        load_image(tmp_path / "nothere.png")


def test_corrupt_file_names_the_file(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"this is not a png")
    with pytest.raises(InputError, match="bad.png"):
        load_image(tmp_path / "bad.png")


def test_truncated_file_names_the_file(tmp_path):
    Image.fromarray(random_rgb(64, 64)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cut.png"):
        load_image(tmp_path / "cut.png")


def test_read_image_size_reads_header(tmp_path):
    Image.fromarray(random_rgb(13, 21)).save(tmp_path / "s.png")
    assert read_image_size(tmp_path / "s.png") == (13, 21)
    with pytest.raises(InputError, match="none.png"):
        read_image_size(tmp_path / "none.png")
