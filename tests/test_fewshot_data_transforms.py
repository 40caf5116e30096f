"""Official FSSAM augmentations (numpy re-implementation) on hand-made inputs and against OpenCV."""

import random

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from samkit.fewshot.data import transforms as T


class ScriptedRng:
    """Returns scripted ``random()`` values and records every call, to check the official call order."""

    def __init__(self, randoms=(), randints=()):
        self.randoms, self.randints, self.calls = list(randoms), list(randints), []

    def random(self):
        self.calls.append("random")
        return self.randoms.pop(0)

    def randint(self, a, b):
        self.calls.append(("randint", a, b))
        return self.randints.pop(0) if self.randints else a


def _image(h, w, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (h, w, 3)).astype(np.float32)


@pytest.mark.parametrize("size", [(7, 11), (23, 5), (16, 16)])
def test_linear_resize_matches_half_pixel_bilinear(size):
    # torch bilinear with align_corners=False and no antialias is OpenCV's INTER_LINEAR
    image = _image(13, 9)
    ours = T.resize_linear(image, *size)
    ref = F.interpolate(
        torch.from_numpy(image).permute(2, 0, 1)[None], size=size, mode="bilinear", align_corners=False
    )
    assert np.abs(ours - ref[0].permute(1, 2, 0).numpy()).max() < 1e-3


def test_nearest_resize_takes_floor_of_scaled_index():
    label = np.arange(6, dtype=np.uint8).reshape(1, 6)
    # 6 -> 4 columns: scale 1.5, sources floor(0, 1.5, 3, 4.5) = 0, 1, 3, 4
    assert T.resize_nearest(label, 1, 4).tolist() == [[0, 1, 3, 4]]
    ref = F.interpolate(torch.from_numpy(label)[None, None].float(), size=(1, 4), mode="nearest")
    assert T.resize_nearest(label, 1, 4).tolist() == ref[0, 0].int().tolist()


def test_scale_rounds_size_half_to_even_and_keeps_values():
    image, label = _image(10, 6), np.zeros((10, 6), np.uint8)
    label[:5] = 1
    out_image, out_label = T.scale(image, label, 1.25)  # 12.5 -> 12, 7.5 -> 8 (cv2 rounds half to even)
    assert out_image.shape == (12, 8, 3) and out_label.shape == (12, 8)
    assert set(np.unique(out_label)) == {0, 1}
    out_image, _ = T.scale(image, label, 0.5)
    assert out_image.shape == (5, 3, 3)


def test_randscale_draws_one_uniform():
    rng = ScriptedRng(randoms=[0.5])
    image, _label = T.RandScale((0.8, 1.2))(_image(10, 20), np.zeros((10, 20), np.uint8), rng)
    assert image.shape[:2] == (10, 20) and rng.calls == ["random"]  # factor 0.8 + 0.4 * 0.5 = 1.0
    rng = ScriptedRng(randoms=[1.0])
    image, _ = T.RandScale((0.8, 1.2))(_image(10, 20), np.zeros((10, 20), np.uint8), rng)
    assert image.shape[:2] == (12, 24)


def test_flip_moves_a_known_pixel():
    image, label = np.zeros((3, 4, 3), np.float32), np.zeros((3, 4), np.uint8)
    image[1, 0] = 200
    label[1, 0] = 1
    out_image, out_label = T.RandomHorizontalFlip()(image, label, ScriptedRng(randoms=[0.1]))
    assert out_label[1, 3] == 1 and out_label.sum() == 1 and out_image[1, 3, 0] == 200
    out_image, out_label = T.RandomHorizontalFlip()(image, label, ScriptedRng(randoms=[0.9]))
    assert out_label[1, 0] == 1  # p = 0.5 not met: unchanged


def test_rotate_90_degrees_moves_pixels_and_fills_ignore():
    # cv2 convention: centre (w/2, h/2) = (2, 2), positive = counter-clockwise. The inverse map of a
    # 90 degree turn is src_x = 4 - y, src_y = x: output (row 3, col 0) reads input (row 0, col 1),
    # and output row 0 reads column 4, outside the image -> ignore 255 / pad value.
    label = np.zeros((4, 4), np.uint8)
    label[0, 1] = 7
    image = np.zeros((4, 4, 3), np.float32)
    image[0, 1] = 100.0
    rng = ScriptedRng(randoms=[0.1, 1.0])  # rotate (0.1 < 0.5), angle = -10 + 20 * 1.0 = 10
    out_image, out_label = T.rotate(image, label, 90.0, (1.0, 2.0, 3.0), 255)
    assert out_label[3, 0] == 7
    assert (out_label[0] == 255).all() and (out_label[1:, :] != 255).all()
    assert out_image[3, 0, 0] == pytest.approx(100.0, abs=1e-3)
    assert out_image[0, 2] == pytest.approx([1.0, 2.0, 3.0], abs=1e-3)
    _, small = T.RandRotate()(image, label, rng)
    assert rng.calls == ["random", "random"] and small.shape == (4, 4)
    rng = ScriptedRng(randoms=[0.9])
    _, same = T.RandRotate()(image, label, rng)
    assert rng.calls == ["random"] and np.array_equal(same, label)


def test_gaussian_blur_is_binomial_with_reflect101_borders():
    image = np.zeros((9, 9, 3), np.float32)
    image[4, 4] = 256.0
    out = T.gaussian_blur(image)[..., 0]
    k = np.array([1, 4, 6, 4, 1]) / 16.0
    assert np.allclose(out[2:7, 2:7], 256.0 * np.outer(k, k))
    corner = np.zeros((9, 9, 3), np.float32)
    corner[0, 0] = 256.0
    out = T.gaussian_blur(corner)[..., 0]
    # reflect-101 mirrors about the edge pixel itself, so the corner keeps the centre weight 6/16
    assert out[0, 0] == pytest.approx(256 * (6 / 16) ** 2)
    assert out[0, 1] == pytest.approx(256 * (6 / 16) * (4 / 16))


def test_crop_pads_with_mean_and_ignore():
    image, label = np.full((4, 6, 3), 9.0, np.float32), np.ones((4, 6), np.uint8)
    out_image, out_label = T.RandomCrop(size=8)(image, label, ScriptedRng(randints=[0, 0]))
    # pad 4 rows (2 top, 2 bottom) and 2 columns (1 left, 1 right)
    assert out_label.shape == (8, 8)
    assert (out_label[:2] == 255).all() and (out_label[6:] == 255).all() and (out_label[:, 0] == 255).all()
    assert (out_label[2:6, 1:7] == 1).all()
    assert out_image[0, 0] == pytest.approx(T.IMAGENET_MEAN_255)
    assert (out_image[2:6, 1:7] == 9.0).all()


def test_crop_redraws_until_foreground_kept_at_most_31_times():
    label = np.zeros((20, 20), np.uint8)
    rng = ScriptedRng()
    T.RandomCrop(size=10)(_image(20, 20), label, rng)
    assert len(rng.calls) == 2  # no foreground: one draw
    label[0, 0] = label[19, 19] = 1  # no 10x10 crop holds 85 % of two far corners
    rng = ScriptedRng()
    T.RandomCrop(size=10)(_image(20, 20), label, rng)
    assert len(rng.calls) == 2 * 32 and rng.calls[0] == ("randint", 0, 10)
    label[:] = 0
    label[12:15, 12:15] = 1  # the 2nd draw (offset 10, 10) keeps it all
    rng = ScriptedRng(randints=[0, 0, 10, 10])
    _, out = T.RandomCrop(size=10)(_image(20, 20), label, rng)
    assert len(rng.calls) == 4 and out.sum() == 9


def test_train_and_eval_pipelines_shapes_values_and_determinism():
    image = _image(50, 70)
    label = np.zeros((50, 70), np.uint8)
    label[10:30, 20:50] = 1
    label[0, :] = 255
    pipeline = T.train_transform(T.COCO_SCALE, size=64)
    a = pipeline(image, label, random.Random(5))
    b = pipeline(image, label, random.Random(5))
    assert a[0].shape == (64, 64, 3) and a[1].shape == (64, 64)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert set(np.unique(a[1])) <= {0, 1, 255} and (a[1] == 1).any()
    out_image, out_label = T.eval_transform(32)(image, label)
    assert out_image.shape == (32, 32, 3) and set(np.unique(out_label)) <= {0, 1, 255}


# ---- against OpenCV itself (the official environment's 4.10), float32 images as the official loads them;
# resampling sums in another order than OpenCV's differ by a few float32 ulps (<= 2e-4 at 0-255)

PAD = [v * 255 for v in (0.485, 0.456, 0.406)]


def _label(h, w, seed=0):
    label = np.random.default_rng(seed).integers(0, 3, (h, w)).astype(np.uint8)
    label[label == 2] = 255
    return label


@pytest.mark.parametrize("factor", [0.9, 0.95, 1.0, 1.07, 1.1, 0.8, 1.25])
def test_scale_equals_cv2_resize(factor):
    image, label = _image(37, 53, seed=1), _label(37, 53, seed=1)
    ours_image, ours_label = T.scale(image, label, factor)
    theirs_image = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
    theirs_label = cv2.resize(label, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(ours_label, theirs_label)
    assert ours_image.shape == theirs_image.shape
    np.testing.assert_allclose(ours_image, theirs_image, rtol=0, atol=2e-4)


@pytest.mark.parametrize("size", [(64, 64), (512, 512), (23, 41)])
def test_resize_to_size_equals_cv2(size):
    image, label = _image(37, 53, seed=2), _label(37, 53, seed=2)
    height, width = size
    np.testing.assert_array_equal(T.resize_nearest(label, height, width),
                                  cv2.resize(label, (width, height), interpolation=cv2.INTER_NEAREST))
    np.testing.assert_allclose(T.resize_linear(image, height, width),
                               cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR), rtol=0, atol=2e-4)


@pytest.mark.parametrize("degrees", [-10.0, -7.3, -0.01, 2.5, 9.99, 90.0])
@pytest.mark.parametrize("shape", [(48, 64), (37, 53)])
def test_rotate_equals_cv2_warp_affine(degrees, shape):
    h, w = shape
    image, label = _image(h, w, seed=3), _label(h, w, seed=3)
    ours_image, ours_label = T.rotate(image, label, degrees, PAD, 255)
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1)
    theirs_image = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                  borderValue=PAD)
    theirs_label = cv2.warpAffine(label, matrix, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                                  borderValue=255)
    np.testing.assert_array_equal(T.rotation_matrix(w / 2, h / 2, degrees), matrix)
    np.testing.assert_array_equal(ours_label, theirs_label)
    np.testing.assert_array_equal(ours_image, theirs_image)  # same fixed-point coordinates and float32 sums


def test_blur_and_flip_equal_cv2():
    image = _image(29, 41, seed=4)
    np.testing.assert_allclose(T.gaussian_blur(image), cv2.GaussianBlur(image, (5, 5), 0), rtol=0, atol=2e-4)
    flipped, _ = T.RandomHorizontalFlip()(image, _label(29, 41), ScriptedRng(randoms=[0.1]))
    np.testing.assert_array_equal(flipped, cv2.flip(image, 1))
