"""The backbone image segmenter gives exactly what sam2's / segment-anything's own predictors give."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import samkit
from samkit.image.segmenter import (
    ImageSegmenter,
    build_image_segmenter,
    mask_to_sam2_logits,
    mask_to_sam_logits,
)
from samkit.backbones.tiny import build_tiny_sam, build_tiny_sam2
from samkit.checkpoints import UntrainedWeightsWarning
from samkit.errors import InputError

pytestmark = pytest.mark.filterwarnings("ignore::samkit.checkpoints.UntrainedWeightsWarning")

HEIGHT, WIDTH = 96, 120


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def object_mask() -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[20:60, 30:90] = True
    return mask


@pytest.fixture(scope="module")
def sam2_segmenter() -> ImageSegmenter:
    return build_image_segmenter("tiny-sam2", device="cpu")


@pytest.fixture(scope="module")
def sam_segmenter() -> ImageSegmenter:
    return build_image_segmenter("tiny-sam", device="cpu")


@pytest.fixture(scope="module")
def sam2_reference(image):
    """sam2's own SAM2ImagePredictor on an independently built tiny model (same seed)."""
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    predictor = SAM2ImagePredictor(build_tiny_sam2(seed=0))
    # stride 4 / 8 / 16 feature maps of a 128 px input (the predictor's defaults are for 1024 px)
    predictor._bb_feat_sizes = [(32, 32), (16, 16), (8, 8)]
    predictor.set_image(image)
    return predictor


@pytest.fixture(scope="module")
def sam_reference(image):
    from segment_anything import SamPredictor

    predictor = SamPredictor(build_tiny_sam(seed=0))
    predictor.set_image(image, image_format="RGB")
    return predictor


def prompt_cases(object_mask):
    """(samkit prompt, predictor kwargs without mask_input, mask or None)."""
    points = np.array([[50, 40], [70, 30]], dtype=np.float32)
    labels = np.array([1, 0], dtype=np.int32)
    box = np.array([10, 12, 80, 70], dtype=np.float32)
    return [
        (samkit.Points(points, labels=labels), {"point_coords": points, "point_labels": labels}, None),
        (samkit.Box(box), {"box": box}, None),
        ([samkit.Points(points[:1]), samkit.Box(box)],
         {"point_coords": points[:1], "point_labels": np.array([1], np.int32), "box": box}, None),
        (samkit.Mask(object_mask), {}, object_mask),
        ([samkit.Mask(object_mask), samkit.Points(points[:1])],
         {"point_coords": points[:1], "point_labels": np.array([1], np.int32)}, object_mask),
        (None, {}, None),
    ]


def reference_prediction(reference, kwargs, mask, to_logits, multimask):
    mask_input = None if mask is None else to_logits(mask)
    return reference.predict(**kwargs, mask_input=mask_input, multimask_output=multimask)


@pytest.mark.parametrize("multimask", [False, True])
@pytest.mark.parametrize("family", ["sam2", "sam"])
def test_parity_with_upstream_predictor(request, image, object_mask, family, multimask):
    segmenter = request.getfixturevalue(f"{family}_segmenter")
    reference = request.getfixturevalue(f"{family}_reference")
    if family == "sam2":
        def to_logits(mask):
            return mask_to_sam2_logits(mask, (32, 32))
    else:
        def to_logits(mask):
            return mask_to_sam_logits(mask, 32)
    for prompt, kwargs, mask in prompt_cases(object_mask):
        result = segmenter.predict(image, prompt=prompt, multimask_output=multimask)
        masks, scores, logits = reference_prediction(reference, kwargs, mask, to_logits, multimask)
        assert result.masks.dtype == np.bool_ and result.masks.shape == (3 if multimask else 1, HEIGHT, WIDTH)
        assert result.scores.dtype == np.float32
        np.testing.assert_array_equal(result.masks, masks.astype(bool))
        np.testing.assert_array_equal(result.scores, scores)
        np.testing.assert_array_equal(result.logits, logits)
        assert 0 < result.masks.sum() < result.masks.size, "a degenerate random model would make parity vacuous"


@pytest.mark.parametrize("family", ["sam2", "sam"])
def test_several_objects_come_back_in_id_order(request, image, family):
    segmenter = request.getfixturevalue(f"{family}_segmenter")
    reference = request.getfixturevalue(f"{family}_reference")
    box = np.array([5, 5, 60, 50], dtype=np.float32)
    point = np.array([[90, 70]], dtype=np.float32)
    prompts = {7: samkit.Box(box), 2: [samkit.Points(point), samkit.Box([60, 40, 119, 95])]}
    for multimask in (False, True):
        result = segmenter.predict(image, prompts=prompts, multimask_output=multimask)
        assert result.obj_ids == [2, 7]
        expected = [
            reference.predict(point_coords=point, point_labels=np.array([1]),
                              box=np.array([60, 40, 119, 95], np.float32), multimask_output=multimask),
            reference.predict(box=box, multimask_output=multimask),
        ]
        for index, (masks, scores, logits) in enumerate(expected):
            best = int(np.argmax(scores))
            np.testing.assert_array_equal(result.masks[index], masks[best].astype(bool))
            assert result.scores[index] == scores[best]
            np.testing.assert_array_equal(result.logits[index], logits[best])


def test_sam2_mask_prompt_is_resized_to_the_low_res_grid():
    mask = np.zeros((64, 128), dtype=bool)
    mask[:, :64] = True
    logits = mask_to_sam2_logits(mask, (16, 16))
    assert logits.shape == (1, 16, 16) and logits.dtype == np.float32
    np.testing.assert_allclose(logits[0, :, :7], 10.0, atol=1e-5)
    np.testing.assert_allclose(logits[0, :, 9:], -10.0, atol=1e-5)


def test_sam_mask_prompt_follows_longest_side_resize_and_padding():
    mask = np.ones((64, 128), dtype=bool)
    mask[:, 96:] = False
    logits = mask_to_sam_logits(mask, 32)
    # 64x128 -> 16x32 (longest side 32), image in the top-left, padding is background
    assert logits.shape == (1, 32, 32)
    np.testing.assert_allclose(logits[0, :16, :23], 10.0, atol=1e-5)
    np.testing.assert_allclose(logits[0, :16, 25:], -10.0, atol=1e-5)
    np.testing.assert_array_equal(logits[0, 16:, :], -10.0)


def test_untrained_and_trained_configs(tmp_path, image):
    with pytest.warns(UntrainedWeightsWarning, match="random"):
        random = build_image_segmenter("tiny-sam2", device="cpu", seed=5)
    assert random.config == {"name": "tiny-sam2", "backbone": "tiny-sam2", "family": "sam2", "image_size": 128,
                             "checkpoint": None, "trained": False, "seed": 5}
    path = tmp_path / "tiny.pt"
    torch.save({"model": random.model.state_dict()}, path)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrainedWeightsWarning)
        trained = build_image_segmenter("tiny-sam2", checkpoint=path, device="cpu", seed=0)
    assert trained.config["trained"] is True and trained.config["checkpoint"] == str(path)
    prompt = samkit.Box([10, 10, 80, 70])
    np.testing.assert_array_equal(trained.predict(image, prompt=prompt).masks, random.predict(image, prompt=prompt).masks)
    assert trained.device == torch.device("cpu")


def test_samkit_load_builds_the_backbone_segmenter(image):
    segmenter = samkit.load("tiny-sam", device="cpu")
    assert isinstance(segmenter, ImageSegmenter)
    assert segmenter.config["backbone"] == "tiny-sam" and segmenter.config["trained"] is False
    assert segmenter.predict(image, prompt=samkit.Points([[10, 10]])).masks.shape == (1, HEIGHT, WIDTH)


def test_image_size_override(image):
    segmenter = build_image_segmenter("tiny-sam2", device="cpu", image_size=64)
    assert segmenter.config["image_size"] == 64
    assert segmenter.predictor._bb_feat_sizes == [(16, 16), (8, 8), (4, 4)]
    result = segmenter.predict(image, prompt=samkit.Mask(np.ones((HEIGHT, WIDTH), bool)))
    assert result.masks.shape == (1, HEIGHT, WIDTH) and result.logits.shape == (1, 16, 16)


def test_bad_prompts_are_input_errors(sam_segmenter, image):
    point = samkit.Points([[10, 10]])
    with pytest.raises(InputError, match="not both"):
        sam_segmenter.predict(image, prompt=point, prompts={1: point})
    with pytest.raises(InputError, match="positive ints"):
        sam_segmenter.predict(image, prompts={0: point})
    with pytest.raises(InputError, match="empty"):
        sam_segmenter.predict(image, prompts={1: []})
    with pytest.raises(InputError, match=r"shape \(4, 4\).*\(96, 120\)"):
        sam_segmenter.predict(image, prompt=samkit.Mask(np.ones((4, 4), bool)))
    with pytest.raises(InputError, match="at most one Box"):
        sam_segmenter.predict(image, prompt=[samkit.Box([0, 0, 5, 5]), samkit.Box([1, 1, 6, 6])])
    with pytest.raises(InputError, match="frame"):
        sam_segmenter.predict(image, prompt=samkit.Points([[10, 10]], frame=2))
    with pytest.raises(InputError, match="Text"):
        sam_segmenter.predict(image, prompt=samkit.Text("a dog"))
    with pytest.raises(InputError, match="numpy image"):
        sam_segmenter.predict(image[..., 0], prompt=point)
    with pytest.raises(InputError, match=r"unknown option\(s\) \['text_encoder'\].*image_size, seed"):
        samkit.load("tiny-sam", text_encoder="bert")
