"""Mask files: DAVIS palette PNGs, binary PNGs, label maps and COCO RLE round trips."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image
from pycocotools import mask as coco_mask

from samkit import InputError
from samkit.io.masks import (
    DAVIS_PALETTE,
    labels_from_masks,
    masks_to_rle,
    palette_colour,
    read_binary_png,
    read_palette_png,
    rle_to_mask,
    write_binary_png,
    write_palette_png,
)

RNG = np.random.default_rng(2)
# pycocotools' own decoder warns under numpy 2 (its Cython code predates the copy keyword).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

# The PASCAL VOC / DAVIS colour map as published (VOC class colours: 8 = cat, 15 = person, 255 = void).
KNOWN_COLOURS = {
    0: (0, 0, 0),
    1: (128, 0, 0),
    2: (0, 128, 0),
    3: (128, 128, 0),
    4: (0, 0, 128),
    5: (128, 0, 128),
    6: (0, 128, 128),
    7: (128, 128, 128),
    8: (64, 0, 0),
    9: (192, 0, 0),
    15: (192, 128, 128),
    20: (0, 64, 128),
    255: (224, 224, 192),
}


def test_davis_palette_matches_the_voc_colour_map():
    assert isinstance(DAVIS_PALETTE, bytes) and len(DAVIS_PALETTE) == 768
    for index, colour in KNOWN_COLOURS.items():
        assert tuple(DAVIS_PALETTE[3 * index : 3 * index + 3]) == colour, index
    assert len({DAVIS_PALETTE[3 * i : 3 * i + 3] for i in range(256)}) == 256  # all distinct


def test_palette_colour_wraps_large_ids_and_never_returns_black():
    assert palette_colour(1) == (128, 0, 0)
    assert palette_colour(256) == palette_colour(1)
    assert all(palette_colour(obj_id) != (0, 0, 0) for obj_id in range(1, 600))


def test_palette_png_round_trip_is_mode_p_with_exact_palette_and_indices(tmp_path):
    labels = RNG.integers(0, 6, size=(17, 23)).astype(np.uint8)
    labels[0, 0] = 255
    write_palette_png(tmp_path / "00000.png", labels)
    with Image.open(tmp_path / "00000.png") as image:
        assert image.mode == "P"
        assert bytes(image.getpalette()) == DAVIS_PALETTE
        assert np.array_equal(np.array(image), labels)
    read = read_palette_png(tmp_path / "00000.png")
    assert read.dtype == np.uint8 and np.array_equal(read, labels)


def test_palette_png_accepts_int_label_maps(tmp_path):
    labels = np.array([[0, 1], [2, 200]], dtype=np.int64)
    write_palette_png(tmp_path / "a.png", labels)
    assert read_palette_png(tmp_path / "a.png").tolist() == labels.tolist()


def test_read_palette_png_accepts_grayscale_and_rejects_rgb(tmp_path):
    labels = np.array([[0, 3], [7, 0]], dtype=np.uint8)
    Image.fromarray(labels).save(tmp_path / "gray.png")
    assert np.array_equal(read_palette_png(tmp_path / "gray.png"), labels)
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(InputError, match="rgb.png"):
        read_palette_png(tmp_path / "rgb.png")
    with pytest.raises(InputError, match="missing.png"):
        read_palette_png(tmp_path / "missing.png")


@pytest.mark.parametrize(
    "labels, message",
    [
        (np.zeros((2, 2, 1), np.uint8), "2-D"),
        (np.zeros((0, 3), np.uint8), "2-D"),
        (np.zeros((2, 2), np.float32), "integer"),
        (np.full((2, 2), 256), "0..255"),
        (np.full((2, 2), -1), "0..255"),
    ],
)
def test_write_palette_png_rejects_bad_label_maps(tmp_path, labels, message):
    with pytest.raises(InputError, match=message):
        write_palette_png(tmp_path / "x.png", labels)
    assert list(tmp_path.iterdir()) == []


def test_binary_png_round_trip(tmp_path):
    mask = RNG.random((13, 9)) > 0.5
    write_binary_png(tmp_path / "obj" / "00000.png", mask)
    with Image.open(tmp_path / "obj" / "00000.png") as image:
        assert image.mode == "L"
        values = np.array(image)
    assert set(np.unique(values).tolist()) == {0, 255}
    assert np.array_equal(values == 255, mask)
    read = read_binary_png(tmp_path / "obj" / "00000.png")
    assert read.dtype == np.bool_ and np.array_equal(read, mask)


def test_read_binary_png_of_a_palette_png_is_foreground_of_any_object(tmp_path):
    labels = np.array([[0, 1], [2, 0]], dtype=np.uint8)
    write_palette_png(tmp_path / "p.png", labels)
    assert read_binary_png(tmp_path / "p.png").tolist() == [[False, True], [True, False]]


def test_write_binary_png_rejects_non_binary(tmp_path):
    with pytest.raises(InputError, match="0/1"):
        write_binary_png(tmp_path / "x.png", np.array([[0, 2]]))


def test_labels_from_masks_non_overlapping():
    first = np.zeros((3, 4), bool)
    first[0, :2] = True
    second = np.zeros((3, 4), bool)
    second[2, 3] = True
    labels = labels_from_masks({7: second, 2: first}, (3, 4))
    expected = np.zeros((3, 4), np.uint8)
    expected[0, :2] = 2
    expected[2, 3] = 7
    assert labels.dtype == np.uint8 and np.array_equal(labels, expected)


def test_labels_from_masks_overlap_rules():
    low = np.array([[1, 1, 0]], bool)
    high = np.array([[0, 1, 1]], bool)
    assert labels_from_masks({1: low, 2: high}, (1, 3)).tolist() == [[1, 2, 2]]  # higher id wins
    assert labels_from_masks({1: low, 2: high}, (1, 3), scores={1: 0.9, 2: 0.4}).tolist() == [[1, 1, 2]]
    assert labels_from_masks({1: low, 2: high}, (1, 3), scores={1: 0.4, 2: 0.9}).tolist() == [[1, 2, 2]]
    assert labels_from_masks({1: low, 2: high}, (1, 3), scores={1: 0.5, 2: 0.5}).tolist() == [[1, 2, 2]]


def test_labels_from_masks_errors():
    mask = np.ones((2, 2), bool)
    with pytest.raises(InputError, match="1..255"):
        labels_from_masks({256: mask}, (2, 2))
    with pytest.raises(InputError, match="1..255"):
        labels_from_masks({0: mask}, (2, 2))
    with pytest.raises(InputError, match=r"\(2, 2\)"):
        labels_from_masks({1: np.ones((2, 3), bool)}, (2, 2))
    with pytest.raises(InputError, match="missing"):
        labels_from_masks({1: mask, 2: mask}, (2, 2), scores={1: 0.5})


@settings(max_examples=40, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 12), st.integers(1, 12))))
def test_rle_round_trip_and_pycocotools_decode(mask):
    rle = masks_to_rle(mask)
    assert rle["size"] == list(mask.shape)
    assert isinstance(rle["counts"], str)
    assert json.loads(json.dumps(rle)) == rle
    decoded = coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode()})
    assert np.array_equal(decoded.astype(bool), mask)
    assert int(coco_mask.area({"size": rle["size"], "counts": rle["counts"].encode()})) == int(mask.sum())
    assert np.array_equal(rle_to_mask(rle), mask)


def test_rle_to_mask_accepts_bytes_and_uncompressed_counts():
    mask = np.array([[0, 1, 1], [1, 0, 0]], bool)
    encoded = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert np.array_equal(rle_to_mask(encoded), mask)
    # Uncompressed RLE runs column-major, starting with background: 0 | 1 1 | 0 0 | 1 ...
    uncompressed = {"size": [2, 2], "counts": [1, 2, 1]}
    assert rle_to_mask(uncompressed).tolist() == [[False, True], [True, False]]


def test_rle_errors():
    with pytest.raises(InputError, match="size"):
        rle_to_mask({"counts": "abc"})
    with pytest.raises(InputError, match="counts"):
        rle_to_mask({"size": [2, 2], "counts": 5})
    with pytest.raises(InputError, match="2-D"):
        masks_to_rle(np.zeros((2, 2, 2), bool))
