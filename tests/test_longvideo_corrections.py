"""Corrections behave as in sam2's SAM2VideoPredictor: clicks add up on a frame, and a correction on a tracked
frame is a conditioning frame only when the predictor's own setting (or ``TreeConfig.corrections_as_cond``)
says so. Compared bit for bit with sam2 itself on the same tiny random weights."""

import warnings

import numpy as np
import pytest
import torch
from helpers import tiny_clip

import samkit
from samkit import InputError
from samkit.io.video import open_video
from samkit.longvideo import LongVideoSegmenter, TreeConfig
from samkit.longvideo.predictor import TreeTracker

POSITIVE, NEGATIVE = 1, 0


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return tiny_clip(tmp_path_factory.mktemp("clip"))


def clicks_of(state):
    """{(obj_id, frame): (points [N,2] in model pixels, labels [N])} of an inference state."""
    clicks = {}
    for obj_idx, per_frame in state["point_inputs_per_obj"].items():
        for frame_idx, inputs in per_frame.items():
            clicks[(state["obj_idx_to_id"][obj_idx], frame_idx)] = (inputs["point_coords"][0].clone(),
                                                                     inputs["point_labels"][0].clone())
    return clicks


# (action, ...) steps: a first propagation, corrections on tracked frames (several clicks adding up on one
# frame, two objects), then propagations that start before the corrected frames, forward and reverse
SCRIPT = [
    ("mask", 0, 1),
    ("points", 0, 2, [[90, 50]], [POSITIVE]),
    ("propagate", 0, False),
    ("points", 4, 1, [[30, 40]], [POSITIVE]),
    ("points", 4, 1, [[60, 30]], [NEGATIVE]),
    ("points", 5, 2, [[100, 60]], [NEGATIVE]),
    ("propagate", 5, False),  # starts right after a correction: its output is memory
    ("points", 3, 2, [[80, 45]], [POSITIVE]),
    ("points", 3, 1, [[20, 20]], [NEGATIVE]),
    ("propagate", 6, True),
    ("propagate", 1, False),
]
FIRST_RUN, AFTER_CORRECTION = 2, 6
"""Indices in SCRIPT of the first propagation and of the one starting after the corrections of frame 4."""


def run_sam2(model, video, folder, as_cond):
    """The script through sam2's own predictor; clicks add up (``clear_old_points=False``)."""
    outputs = []
    previous = model.add_all_frames_to_correct_as_cond
    model.add_all_frames_to_correct_as_cond = as_cond
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = model.init_state(folder)
            for step in SCRIPT:
                if step[0] == "mask":
                    _, ids, logits = model.add_new_mask(state, step[1], step[2], video.masks[step[2]][step[1]])
                    outputs.append((step[1], list(ids), logits.clone()))
                elif step[0] == "points":
                    _, ids, logits = model.add_new_points_or_box(
                        state, step[1], step[2], points=np.array(step[3], np.float32),
                        labels=np.array(step[4], np.int32), clear_old_points=False)
                    outputs.append((step[1], list(ids), logits.clone()))
                else:
                    outputs.append([(f, list(ids), logits.clone()) for f, ids, logits
                                    in model.propagate_in_video(state, step[1], None, step[2])])
    finally:
        model.add_all_frames_to_correct_as_cond = previous
    return outputs, clicks_of(state)


def run_tracker(model, video, folder, tree):
    tracker = TreeTracker(model, tree)
    state = tracker.init_state(open_video(folder))
    outputs = []
    for step in SCRIPT:
        if step[0] == "mask":
            logits = tracker.add_mask(state, step[1], step[2], video.masks[step[2]][step[1]])
            outputs.append((step[1], list(state["obj_ids"]), logits.clone()))
        elif step[0] == "points":
            logits = tracker.add_points_or_box(state, step[1], step[2], points=np.array(step[3], np.float32),
                                               labels=np.array(step[4], np.int32), clear_old_points=False)
            outputs.append((step[1], list(state["obj_ids"]), logits.clone()))
        else:
            outputs.append([(f, list(ids), logits.clone()) for f, ids, logits, _
                            in tracker.propagate(state, step[1], None, step[2])])
    tracker.close()
    return outputs, clicks_of(state)


def assert_same(expected, actual):
    assert len(expected) == len(actual)
    for expected_step, actual_step in zip(expected, actual):
        if isinstance(expected_step, list):  # a propagation
            assert [f for f, _, _ in actual_step] == [f for f, _, _ in expected_step]
            for (_, expected_ids, expected_logits), (_, actual_ids, actual_logits) in zip(expected_step, actual_step):
                assert actual_ids == expected_ids
                assert torch.equal(actual_logits, expected_logits)
        else:
            assert actual_step[:2] == expected_step[:2]
            assert torch.equal(actual_step[2], expected_step[2])


def assert_same_clicks(expected, actual):
    assert sorted(actual) == sorted(expected)
    for key, (points, labels) in expected.items():
        assert torch.equal(actual[key][0], points) and torch.equal(actual[key][1], labels)


@pytest.fixture(scope="module")
def sam2_runs(clip, one_torch_thread):
    """sam2's own outputs and clicks for the script, corrections as non-conditioning (its default) and as
    conditioning frames."""
    video, folder, model = clip
    return {as_cond: run_sam2(model, video, folder, as_cond) for as_cond in (False, True)}


def test_sam2_preset_follows_the_predictor_on_corrections(clip, sam2_runs):
    video, folder, model = clip
    assert model.add_all_frames_to_correct_as_cond is False  # sam2's own default
    expected, expected_clicks = sam2_runs[False]
    actual, actual_clicks = run_tracker(model, video, folder, TreeConfig.sam2())
    assert_same(expected, actual)
    assert_same_clicks(expected_clicks, actual_clicks)
    assert len(expected_clicks[(1, 4)][1]) == 2  # the two clicks on frame 4 were kept together
    # the correction is memory for the propagation starting after it: frame 5 differs from the first run
    assert not torch.equal(expected[AFTER_CORRECTION][0][2], expected[FIRST_RUN][5][2])
    # and the choice matters: as conditioning frames the corrections give other masks (issue 10)
    as_cond = sam2_runs[True][0]
    assert any(not torch.equal(a[2], b[2]) for step in range(len(SCRIPT)) if isinstance(expected[step], list)
               for a, b in zip(expected[step], as_cond[step]))


def test_corrections_as_cond_option_matches_the_predictor_setting(clip, sam2_runs):
    video, folder, model = clip
    expected, expected_clicks = sam2_runs[True]
    actual, actual_clicks = run_tracker(model, video, folder, TreeConfig.sam2().replace(corrections_as_cond=True))
    assert_same(expected, actual)
    assert_same_clicks(expected_clicks, actual_clicks)
    assert model.add_all_frames_to_correct_as_cond is False  # the shared model's own flag is left alone


def test_corrections_as_cond_presets_and_validation():
    assert TreeConfig.sam2().corrections_as_cond is None  # the predictor's own setting
    assert TreeConfig.paper().corrections_as_cond is True
    assert TreeConfig.official().corrections_as_cond is True
    with pytest.raises(InputError, match="corrections_as_cond"):
        TreeConfig(corrections_as_cond="yes")


def test_session_corrections_add_clicks_like_sam2(clip, one_torch_thread):
    """Positive click, then a negative correction on the same frame: both clicks stay (defect 2)."""
    video, folder, model = clip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state = model.init_state(folder)
        model.add_new_mask(state, 0, 1, video.masks[1][0])
        list(model.propagate_in_video(state))
        _, _, first = model.add_new_points_or_box(state, 3, 1, points=np.array([[30, 40]], np.float32),
                                                  labels=np.array([POSITIVE], np.int32), clear_old_points=False)
        _, _, second = model.add_new_points_or_box(state, 3, 1, points=np.array([[60, 30]], np.float32),
                                                   labels=np.array([NEGATIVE], np.int32), clear_old_points=False)
        expected_frames = [(f, logits.clone()) for f, _, logits in model.propagate_in_video(state, 1)]
    segmenter = LongVideoSegmenter(model, TreeConfig.sam2(), {"name": "sam2"}, torch.device("cpu"))
    session = segmenter.session(folder)
    session.add_prompt(1, samkit.Mask(video.masks[1][0]))
    list(session.propagate())
    after_positive = session.correct(1, samkit.Points([[30, 40]], [POSITIVE], frame=3))
    after_negative = session.correct(1, samkit.Points([[60, 30]], [NEGATIVE], frame=3))
    np.testing.assert_array_equal(after_positive.masks[1], (first[0, 0] > 0).numpy())
    np.testing.assert_array_equal(after_negative.masks[1], (second[0, 0] > 0).numpy())
    assert not np.array_equal(after_positive.masks[1], after_negative.masks[1])  # the negative click mattered
    assert_same_clicks(clicks_of(state), clicks_of(session.state))
    assert session.state["point_inputs_per_obj"][0][3]["point_labels"].tolist() == [[POSITIVE, NEGATIVE]]
    frames = list(session.propagate(start_frame=1))
    assert [f.frame_idx for f in frames] == [f for f, _ in expected_frames]
    for frame, (_, logits) in zip(frames, expected_frames):
        np.testing.assert_array_equal(frame.masks[1], (logits[0, 0] > 0).numpy())
    segmenter.tracker.close()


def test_replace_drops_the_earlier_clicks_of_that_frame(clip, one_torch_thread):
    _, folder, model = clip
    segmenter = LongVideoSegmenter(model, TreeConfig.sam2(), {"name": "sam2"}, torch.device("cpu"))
    session = segmenter.session(folder)
    session.add_prompt(1, samkit.Points([[30, 40]], frame=2))
    session.add_prompt(1, samkit.Points([[60, 30]], [NEGATIVE], frame=2))
    assert session.state["point_inputs_per_obj"][0][2]["point_labels"].tolist() == [[POSITIVE, NEGATIVE]]
    session.correct(1, samkit.Points([[50, 50]], frame=2), replace=True)
    assert session.state["point_inputs_per_obj"][0][2]["point_labels"].tolist() == [[POSITIVE]]
    # a box must come before any click (sam2's rule): adding one to existing clicks needs replace=True
    with pytest.raises(InputError, match="replace=True"):
        session.add_prompt(1, samkit.Box([10, 10, 70, 60], frame=2))
    session.add_prompt(1, samkit.Box([10, 10, 70, 60], frame=2), replace=True)
    assert session.state["point_inputs_per_obj"][0][2]["point_labels"].tolist() == [[2, 3]]
    session.add_prompt(1, samkit.Points([[40, 30]], frame=2))  # clicks add to the box
    assert session.state["point_inputs_per_obj"][0][2]["point_labels"].tolist() == [[2, 3, POSITIVE]]
    segmenter.tracker.close()
