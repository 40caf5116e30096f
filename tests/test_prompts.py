"""Prompt validation: valid prompts construct and are read-only; every malformed one is an InputError."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from samkit import Box, InputError, Mask, Points, SupportSet, Text

FAST = settings(max_examples=40, deadline=None)

coordinates = st.floats(0, 4096, allow_nan=False, allow_infinity=False, width=32)
frames = st.integers(0, 10**6)
point_counts = st.integers(1, 8)


@st.composite
def point_sets(draw):
    count = draw(point_counts)
    xy = draw(arrays(np.float64, (count, 2), elements=coordinates))
    labels = draw(arrays(np.int64, (count,), elements=st.sampled_from([0, 1])))
    return xy, labels


@st.composite
def boxes(draw):
    x0, y0 = draw(coordinates), draw(coordinates)
    width, height = draw(coordinates), draw(coordinates)
    return np.array([x0, y0, x0 + width, y0 + height], dtype=np.float64)


@st.composite
def non_empty_masks(draw, max_side=12):
    shape = draw(st.tuples(st.integers(1, max_side), st.integers(1, max_side)))
    mask = draw(arrays(np.bool_, shape))
    row, col = draw(st.integers(0, shape[0] - 1)), draw(st.integers(0, shape[1] - 1))
    mask[row, col] = True
    return mask


def assert_read_only(prompt, field, array):
    with pytest.raises(ValueError):
        array[(0,) * array.ndim] = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(prompt, field, array)


# ---------------------------------------------------------------- Points


@FAST
@given(point_sets(), frames)
def test_valid_points_construct_and_are_frozen(points, frame):
    xy, labels = points
    prompt = Points(xy, labels=labels, frame=frame)
    assert prompt.xy.dtype == np.float32 and prompt.xy.shape == xy.shape
    assert np.array_equal(prompt.xy, xy.astype(np.float32))
    assert prompt.labels.tolist() == labels.tolist() and prompt.frame == frame
    assert_read_only(prompt, "xy", prompt.xy)
    assert_read_only(prompt, "labels", prompt.labels)
    original = prompt.xy.copy()
    xy += 1  # the caller's array is copied, not shared
    assert np.array_equal(prompt.xy, original)


@FAST
@given(point_sets())
def test_points_default_labels_are_positive(points):
    xy, _ = points
    assert Points(xy.tolist()).labels.tolist() == [1] * len(xy)


def test_single_point_and_bool_or_float_labels():
    prompt = Points([3, 4], labels=1)
    assert prompt.xy.tolist() == [[3.0, 4.0]] and prompt.labels.tolist() == [1]
    assert Points([[1, 2], [3, 4]], labels=[True, False]).labels.tolist() == [1, 0]
    assert Points([[1, 2], [3, 4]], labels=np.array([0.0, 1.0])).labels.tolist() == [0, 1]


@FAST
@given(point_sets(), st.sampled_from([np.nan, np.inf, -np.inf]), st.data())
def test_points_with_non_finite_coordinates_are_rejected(points, bad_value, data):
    xy, labels = points
    row = data.draw(st.integers(0, len(xy) - 1))
    xy[row, data.draw(st.integers(0, 1))] = bad_value
    with pytest.raises(InputError, match="finite"):
        Points(xy, labels=labels)


@FAST
@given(point_sets(), st.floats(-1e4, -1e-3), st.data())
def test_points_with_negative_coordinates_are_rejected(points, negative, data):
    xy, labels = points
    xy[data.draw(st.integers(0, len(xy) - 1)), data.draw(st.integers(0, 1))] = negative
    with pytest.raises(InputError, match="non-negative"):
        Points(xy, labels=labels)


@FAST
@given(
    st.one_of(
        st.tuples(point_counts, st.integers(3, 5)),
        st.tuples(st.just(0), st.just(2)),
        st.tuples(point_counts, st.just(2), st.integers(1, 3)),
        st.tuples(st.integers(3, 9)),
    )
)
def test_points_with_wrong_shape_are_rejected(shape):
    with pytest.raises(InputError, match=r"\(K, 2\)"):
        Points(np.ones(shape))


@FAST
@given(point_sets(), st.integers(-10, 10).filter(lambda value: value not in (0, 1)), st.data())
def test_points_with_out_of_range_labels_are_rejected(points, bad_label, data):
    xy, labels = points
    labels[data.draw(st.integers(0, len(labels) - 1))] = bad_label
    with pytest.raises(InputError, match="labels"):
        Points(xy, labels=labels)


@FAST
@given(point_sets(), st.integers(1, 4))
def test_points_with_label_count_mismatch_are_rejected(points, extra):
    xy, labels = points
    with pytest.raises(InputError, match="labels must have shape"):
        Points(xy, labels=np.concatenate([labels, np.ones(extra, np.int64)]))


@pytest.mark.parametrize(
    "xy",
    [
        [["1", "2"]],
        [[True, False]],
        [[1 + 2j, 3]],
        [[1, 2], [3]],
        "12",
    ],
)
def test_points_with_non_numeric_coordinates_are_rejected(xy):
    with pytest.raises(InputError, match="Points.xy"):
        Points(xy)


@pytest.mark.parametrize("frame", [-1, 1.0, True, "0", None])
def test_bad_frame_indices_are_rejected(frame):
    with pytest.raises(InputError, match="frame"):
        Points([[1, 2]], frame=frame)
    with pytest.raises(InputError, match="frame"):
        Box([0, 0, 1, 1], frame=frame)
    with pytest.raises(InputError, match="frame"):
        Mask(np.ones((2, 2), bool), frame=frame)


# ---------------------------------------------------------------- Box


@FAST
@given(boxes(), frames)
def test_valid_boxes_construct_and_are_frozen(xyxy, frame):
    prompt = Box(xyxy, frame=frame)
    assert np.array_equal(prompt.xyxy, xyxy.astype(np.float32)) and prompt.frame == frame
    assert_read_only(prompt, "xyxy", prompt.xyxy)
    assert Box(xyxy.reshape(2, 2)).xyxy.tolist() == prompt.xyxy.tolist()  # [[x0, y0], [x1, y1]]


@FAST
@given(boxes(), st.floats(1e-2, 100), st.integers(0, 1))
def test_inverted_boxes_are_rejected(xyxy, shrink, axis):
    xyxy[2 + axis] = xyxy[axis] - shrink
    with pytest.raises(InputError, match="x0 <= x1"):
        Box(xyxy)


@FAST
@given(boxes(), st.sampled_from([np.nan, np.inf, -np.inf]), st.integers(0, 3))
def test_non_finite_boxes_are_rejected(xyxy, bad_value, position):
    xyxy[position] = bad_value
    with pytest.raises(InputError, match="finite"):
        Box(xyxy)


@pytest.mark.parametrize("xyxy", [[1, 2, 3], [0, 0, 1, 1, 2], [], [-1, 0, 2, 2], [0, -3, 2, 2]])
def test_boxes_with_wrong_length_or_negative_corner_are_rejected(xyxy):
    with pytest.raises(InputError, match="Box.xyxy"):
        Box(xyxy)


# ---------------------------------------------------------------- Mask


@FAST
@given(non_empty_masks(), frames)
def test_valid_masks_construct_and_are_frozen(mask, frame):
    prompt = Mask(mask, frame=frame)
    assert prompt.mask.dtype == np.bool_ and np.array_equal(prompt.mask, mask)
    assert_read_only(prompt, "mask", prompt.mask)
    assert np.array_equal(Mask(mask.astype(np.uint8)).mask, mask)
    assert np.array_equal(Mask(mask.astype(np.float32)).mask, mask)


@FAST
@given(st.tuples(st.integers(1, 12), st.integers(1, 12)))
def test_empty_masks_are_rejected(shape):
    with pytest.raises(InputError, match="empty"):
        Mask(np.zeros(shape, bool))


@FAST
@given(non_empty_masks(), st.sampled_from([2, -1, 0.5, np.nan, 255]), st.data())
def test_masks_with_non_binary_values_are_rejected(mask, bad_value, data):
    values = mask.astype(np.float64)
    values[data.draw(st.integers(0, mask.shape[0] - 1)), data.draw(st.integers(0, mask.shape[1] - 1))] = (
        bad_value
    )
    with pytest.raises(InputError, match="0/1"):
        Mask(values)


@pytest.mark.parametrize("shape", [(4,), (2, 3, 1), (0, 4), (3, 0)])
def test_masks_with_wrong_shape_are_rejected(shape):
    with pytest.raises(InputError, match="2-D"):
        Mask(np.ones(shape, bool))


# ---------------------------------------------------------------- Text


@FAST
@given(st.text(min_size=1).filter(lambda text: text.strip()))
def test_valid_text(text):
    prompt = Text(text)
    assert prompt.text == text
    with pytest.raises(dataclasses.FrozenInstanceError):
        prompt.text = "other"


@FAST
@given(st.text(alphabet=" \t\n\r", max_size=5))
def test_blank_text_is_rejected(text):
    with pytest.raises(InputError, match="empty"):
        Text(text)


@pytest.mark.parametrize("value", [None, 3, b"bytes", ["the dog"]])
def test_non_string_text_is_rejected(value):
    with pytest.raises(InputError, match="str"):
        Text(value)


# ---------------------------------------------------------------- SupportSet


@st.composite
def support_shots(draw):
    count = draw(st.integers(1, 3))
    images, masks = [], []
    for _ in range(count):
        mask = draw(non_empty_masks(max_side=8))
        images.append(draw(arrays(np.uint8, mask.shape + (3,))))
        masks.append(mask)
    return images, masks


@FAST
@given(support_shots())
def test_valid_support_sets_construct_and_are_frozen(shots):
    images, masks = shots
    support = SupportSet(images=images, masks=masks)
    assert len(support) == len(images)
    assert isinstance(support.images, tuple) and isinstance(support.masks, tuple)
    for stored, expected in zip(support.images, images):
        assert np.array_equal(stored, expected)
        assert_read_only(support, "images", stored)
    for stored, expected in zip(support.masks, masks):
        assert np.array_equal(stored, expected)
        with pytest.raises(ValueError):
            stored[0, 0] = False


def test_support_set_accepts_single_shot_pil_path_and_ignore_label(tmp_path):
    image = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    mask = np.zeros((4, 5), np.uint8)
    mask[1, 1], mask[0, 0] = 1, 255
    Image.fromarray(image).save(tmp_path / "s.png")
    for source in (image, Image.fromarray(image), tmp_path / "s.png", str(tmp_path / "s.png")):
        support = SupportSet(images=source, masks=mask)
        assert len(support) == 1 and np.array_equal(support.images[0], image)
        assert support.masks[0].tolist() == mask.tolist()


def test_support_set_errors():
    image = np.zeros((4, 5, 3), np.uint8)
    mask = np.zeros((4, 5), bool)
    mask[2, 2] = True
    with pytest.raises(InputError, match="at least one"):
        SupportSet(images=[], masks=[])
    with pytest.raises(InputError, match="2 images but 1 masks"):
        SupportSet(images=[image, image], masks=[mask])
    with pytest.raises(InputError, match=r"mask 0 has shape \(4, 4\)"):
        SupportSet(images=[image], masks=[mask[:, :4]])
    with pytest.raises(InputError, match="mask 1 is empty"):
        SupportSet(images=[image, image], masks=[mask, np.zeros((4, 5), bool)])
    with pytest.raises(InputError, match="255 marks ignored"):
        SupportSet(images=[image], masks=[np.full((4, 5), 255, np.uint8)])
    with pytest.raises(InputError, match="mask 0 must be bool"):
        SupportSet(images=[image], masks=[mask.astype(np.float32)])
    with pytest.raises(InputError, match="image 0"):
        SupportSet(images=[image.astype(np.float32)], masks=[mask])
    with pytest.raises(InputError, match="lists"):
        SupportSet(images=5, masks=[mask])
