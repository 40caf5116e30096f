"""A streamed VideoResult knows up front how many frames it will yield (progress bars, writers)."""

import warnings

import pytest

import samkit
from samkit.samples import synthetic_video


@pytest.fixture(scope="module")
def tracker():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return samkit.load("sam2", backbone="tiny-sam2", device="cpu")


@pytest.mark.parametrize("prompt_frame, kwargs, expected", [
    (0, {}, 6),
    (0, {"max_frames": 2}, 2),
    (2, {}, 4),
    (3, {"reverse": True}, 4),
    (3, {"reverse": True, "max_frames": 3}, 3),
    (0, {"reverse": True}, 0),
    (1, {"start_frame": 4}, 2),
])
def test_num_frames_equals_frames_yielded(tracker, prompt_frame, kwargs, expected):
    video = synthetic_video(num_frames=6, height=48, width=64)
    prompt = samkit.Mask(video.masks[1][prompt_frame], frame=prompt_frame)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = tracker.predict(list(video.frames), prompt=prompt, **kwargs)
        frames = result.collect()
    assert result.num_frames == expected
    assert len(frames) == expected


def test_official_preset_builds_like_the_official_script():
    # tools/vos_inference.py builds without sam2's post-processing unless --apply_postprocessing
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        official = samkit.load("sam2long", backbone="tiny-sam2", tree="official", device="cpu")
        paper = samkit.load("sam2long", backbone="tiny-sam2", tree="paper", device="cpu")
        explicit = samkit.load("sam2long", backbone="tiny-sam2", tree="official", apply_postprocessing=True,
                               device="cpu")
    assert official.config["apply_postprocessing"] is False
    assert not official.model.sam_mask_decoder.dynamic_multimask_via_stability
    assert paper.model.sam_mask_decoder.dynamic_multimask_via_stability
    assert explicit.model.sam_mask_decoder.dynamic_multimask_via_stability
