"""TreeConfig.sam2() is exactly SAM 2: bit-identical to sam2's own SAM2VideoPredictor (same weights, video, prompts)."""

import warnings

import numpy as np
import pytest
import torch
from helpers import CLIP_FRAMES as NUM_FRAMES
from helpers import CLIP_HEIGHT as HEIGHT
from helpers import CLIP_WIDTH as WIDTH
from helpers import tiny_clip

import samkit
from samkit.io.video import open_video
from samkit.longvideo import LongVideoSegmenter, TreeConfig
from samkit.longvideo.predictor import LazyFrames, TreeTracker

# (kind, frame, obj_id, argument): several objects, several prompt frames per object, all prompt types
FORWARD = [("mask", 0, 1, None), ("points", 0, 2, ([[90, 50]], [1])), ("box", 5, 1, [10, 10, 70, 60]),
           ("points", 3, 2, ([[60, 40], [20, 20]], [1, 0]))]
REVERSE = [("mask", 7, 1, None), ("points", 7, 2, ([[20, 50]], [1])), ("box", 3, 1, [10, 10, 70, 60])]
MIDDLE = [("mask", 4, 1, None), ("points", 4, 2, ([[60, 50]], [1]))]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return tiny_clip(tmp_path_factory.mktemp("clip"))


def add(kind, frame, obj_id, argument, video, add_mask, add_points):
    if kind == "mask":
        add_mask(frame, obj_id, video.masks[obj_id][frame])
    elif kind == "points":
        add_points(frame, obj_id, np.array(argument[0], np.float32), np.array(argument[1], np.int32), None)
    else:
        add_points(frame, obj_id, None, None, np.array(argument, np.float32))


def run_sam2(model, video, folder, prompts, runs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state = model.init_state(folder)
        for prompt in prompts:
            add(*prompt, video, lambda f, o, m: model.add_new_mask(state, f, o, m),
                lambda f, o, p, l, b: model.add_new_points_or_box(state, f, o, points=p, labels=l, box=b))
        return [[(f, list(ids), masks.clone()) for f, ids, masks in model.propagate_in_video(state, start, None, rev)]
                for start, rev in runs]


def run_tracker(model, video, folder, prompts, runs):
    tracker = TreeTracker(model, TreeConfig.sam2())
    state = tracker.init_state(open_video(folder))
    for prompt in prompts:
        add(*prompt, video, lambda f, o, m: tracker.add_mask(state, f, o, m),
            lambda f, o, p, l, b: tracker.add_points_or_box(state, f, o, points=p, labels=l, box=b))
    outputs = [[(f, list(ids), masks.clone()) for f, ids, masks, _ in tracker.propagate(state, start, None, rev)]
               for start, rev in runs]
    tracker.close()
    return outputs


@pytest.mark.parametrize("prompts, runs", [
    (FORWARD, [(None, False)]),
    (REVERSE, [(None, True)]),
    (MIDDLE, [(None, False), (None, True)]),  # forward then reverse in one session: memory carries over
    (FORWARD, [(2, False)]),
], ids=["forward", "reverse", "forward-then-reverse", "start-mid-video"])
def test_sam2_mode_logits_are_bit_identical(clip, prompts, runs):
    video, folder, model = clip
    expected = run_sam2(model, video, folder, prompts, runs)
    actual = run_tracker(model, video, folder, prompts, runs)
    for expected_run, actual_run in zip(expected, actual):
        assert [f for f, _, _ in actual_run] == [f for f, _, _ in expected_run]
        for (_, expected_ids, expected_logits), (_, actual_ids, actual_logits) in zip(expected_run, actual_run):
            assert actual_ids == expected_ids
            assert torch.equal(actual_logits, expected_logits)
    foreground = sum(int((logits > 0).sum()) for run in expected for _, _, logits in run)
    assert foreground > 0  # the comparison covers non-empty masks


def test_sam2_mode_masks_through_public_api(clip):
    video, folder, model = clip
    expected = run_sam2(model, video, folder, FORWARD, [(None, False)])[0]
    segmenter = LongVideoSegmenter(model, TreeConfig.sam2(), {"name": "sam2"}, torch.device("cpu"))
    prompts = {1: [samkit.Mask(video.masks[1][0], frame=0), samkit.Box([10, 10, 70, 60], frame=5)],
               2: [samkit.Points([[90, 50]], frame=0), samkit.Points([[60, 40], [20, 20]], [1, 0], frame=3)]}
    frames = list(segmenter.predict(folder, prompts=prompts))
    segmenter.tracker.close()
    assert [frame.frame_idx for frame in frames] == [f for f, _, _ in expected]
    overlaps = 0
    for frame, (_, ids, logits) in zip(frames, expected):
        overlaps += int(((logits[:, 0] > 0).sum(dim=0) > 1).sum())
        logits = model._apply_non_overlapping_constraints(logits)  # sam2's own rule, as predict applies it
        for row, obj_id in enumerate(ids):
            np.testing.assert_array_equal(frame.masks[obj_id], (logits[row, 0] > 0).numpy())
        assert not np.any(frame.masks[1] & frame.masks[2])
    assert overlaps > 0  # the raw masks did overlap, so the rule was exercised


def test_lazy_frames_match_sam2_loader(clip):
    from sam2.utils.misc import load_video_frames

    _, folder, model = clip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        images, height, width = load_video_frames(folder, model.image_size, offload_video_to_cpu=True)
    lazy = LazyFrames(open_video(folder), model.image_size)
    assert len(lazy) == NUM_FRAMES and (height, width) == (HEIGHT, WIDTH)
    for index in (0, 5, 7, 5):
        assert torch.equal(lazy[index], images[index])
    assert len(lazy._cache) <= 2


def test_sam2_mode_scores_are_sam2s_object_presence(clip):
    """FrameResult.scores of plain SAM 2 are sigmoid(object_score_logits) of sam2's own predictor."""
    video, folder, model = clip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state = model.init_state(folder)
        for prompt in FORWARD:
            add(*prompt, video, lambda f, o, m: model.add_new_mask(state, f, o, m),
                lambda f, o, p, l, b: model.add_new_points_or_box(state, f, o, points=p, labels=l, box=b))
        for _ in model.propagate_in_video(state):
            pass
    expected = {}
    for obj_idx, obj_id in enumerate(state["obj_ids"]):
        outputs = state["output_dict_per_obj"][obj_idx]
        for frame_idx in range(NUM_FRAMES):
            out = outputs["cond_frame_outputs"].get(frame_idx) or outputs["non_cond_frame_outputs"].get(frame_idx)
            if out is not None:
                expected[frame_idx, obj_id] = torch.sigmoid(out["object_score_logits"]).item()
    segmenter = LongVideoSegmenter(model, TreeConfig.sam2(), {"name": "sam2"}, torch.device("cpu"))
    prompts = {}
    for kind, frame, obj_id, argument in FORWARD:
        if kind == "mask":
            item = samkit.Mask(video.masks[obj_id][frame], frame=frame)
        elif kind == "points":
            item = samkit.Points(argument[0], labels=argument[1], frame=frame)
        else:
            item = samkit.Box(argument, frame=frame)
        prompts.setdefault(obj_id, []).append(item)
    got = {(f.frame_idx, obj_id): score for f in segmenter.predict(folder, prompts=prompts)
           for obj_id, score in f.scores.items()}
    assert got.keys() == expected.keys()
    assert max(abs(got[key] - expected[key]) for key in expected) < 1e-6  # float32 vs float64 sigmoid
    assert len({round(value, 6) for value in expected.values()}) > 1  # scores carry information, not a constant
