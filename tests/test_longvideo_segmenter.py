"""LongVideoSegmenter / session / TreeTracker: streaming = backtracking, registry, bad input, bounded memory."""

import gc
import warnings

import numpy as np
import pytest
import torch

import samkit
from samkit import InputError
from samkit.io.video import open_video
from samkit.longvideo import LongVideoSegmenter, TreeConfig
from samkit.longvideo.predictor import TreeTracker
from samkit.longvideo.tree import Node
from samkit.samples import synthetic_video

HEIGHT, WIDTH = 96, 128


def load(name="sam2long", **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return samkit.load(name, backbone="tiny-sam2", device="cpu", **options)


@pytest.fixture(scope="module")
def video():
    return synthetic_video(num_frames=10, height=HEIGHT, width=WIDTH, seed=1)


@pytest.fixture(scope="module")
def segmenter(one_torch_thread):
    return load()


def track(tracker, video, stream=True):
    """Propagate two objects (object 2 prompted late); returns [(frame, ids, logits, steps run so far)]."""
    steps = []
    step = tracker._step

    def counting_step(*args, **kwargs):
        steps.append(args[1])
        return step(*args, **kwargs)

    tracker._step = counting_step
    if not stream:
        tracker._frontier = lambda *args: None  # never commit early: backtrack slot 0 at the end
    state = tracker.init_state(open_video(list(video.frames)))
    tracker.add_mask(state, 0, 1, video.masks[1][0])
    tracker.add_points_or_box(state, 2, 2, box=np.array([60, 20, 120, 80], np.float32))
    outputs = [(f, ids, logits.clone(), len(steps)) for f, ids, logits, _ in tracker.propagate(state)]
    tracker.close()
    return outputs


@pytest.mark.parametrize("tree", [TreeConfig.paper(), TreeConfig.official(), TreeConfig(uncertainty_threshold=0.0)],
                         ids=["paper", "official", "always-certain"])
def test_streamed_frames_equal_end_of_video_backtrack(segmenter, video, tree):
    streamed = track(TreeTracker(segmenter.model, tree), video)
    final = track(TreeTracker(segmenter.model, tree), video, stream=False)
    assert [f for f, *_ in streamed] == [f for f, *_ in final] == list(range(10))
    for (_, ids, logits, _), (_, final_ids, final_logits, _) in zip(streamed, final):
        assert ids == final_ids and torch.equal(logits, final_logits)
    # frames really stream: most are yielded before the last frame has been tracked
    assert sum(steps < 10 for *_, steps in streamed) >= 5
    assert all(steps == 10 for *_, steps in final)
    # object 2 is reported from its prompt frame on
    assert [ids for _, ids, _, _ in streamed][:3] == [[1], [1], [1, 2]]


def test_tree_changes_the_masks_and_computes_collapsed_pathways_once(segmenter, video):
    calls = []
    model = segmenter.model
    original = model._track_step

    def counting(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    model._track_step = counting
    try:
        sam2 = track(TreeTracker(model, TreeConfig.sam2()), video)
        sam2_calls, calls[:] = len(calls), []
        tree = track(TreeTracker(model, TreeConfig.paper()), video)
    finally:
        del model._track_step
    prompts, tracked = 2, 9 + 7  # one step per prompt, then per object and non-prompt frame
    assert sam2_calls == prompts + tracked
    # the warm-up frame after each prompt runs once (pathways collapsed); never more than 3 per object and frame
    assert prompts + tracked < len(calls) < prompts + 3 * tracked - 2
    assert any(not torch.equal(a[2], b[2]) for a, b in zip(sam2, tree))


def test_load_registry_and_presets():
    assert {"sam2long", "sam2"} <= set(samkit.list_models("head"))
    paper = load()
    assert isinstance(paper, LongVideoSegmenter) and paper.tree == TreeConfig.paper()
    assert paper.config["trained"] is False and paper.config["backbone"] == "tiny-sam2"
    assert load("sam2").tree == TreeConfig.sam2()
    assert load(tree="official").tree == TreeConfig.official()
    assert load(tree={"num_pathways": 2, "key_weight_range": [0.9, 1.1]}).tree.key_weight_range == (0.9, 1.1)
    with pytest.raises(InputError, match="num_pathways"):
        load(tree={"num_pathways": 0})
    with pytest.raises(InputError, match="unknown option"):
        load(pathways=3)
    with pytest.raises(InputError, match="tree preset"):
        load(tree="fast")


def test_backbone_without_multimask_tracking_is_rejected(tmp_path):
    from samkit.backbones.sam2_models import tiny_sam2_config_path

    text = tiny_sam2_config_path().read_text().replace("multimask_output_for_tracking: true",
                                                       "multimask_output_for_tracking: false")
    config = tmp_path / "no_multimask.yaml"
    config.write_text(text)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(InputError, match="multimask_output_for_tracking"):
            samkit.load("sam2long", backbone=str(config), device="cpu")
        assert samkit.load("sam2", backbone=str(config), device="cpu").tree.num_pathways == 1


def test_predict_reverse_max_frames_and_late_objects(segmenter, video):
    frames = list(video.frames)
    result = segmenter.predict(frames, prompts={1: samkit.Mask(video.masks[1][6], frame=6)}, reverse=True,
                               max_frames=4)
    collected = result.collect()
    assert [f.frame_idx for f in collected] == [6, 5, 4, 3]
    assert (result.height, result.width) == (HEIGHT, WIDTH)
    prompt_mask, output = video.masks[1][6], collected[0].masks[1]  # the prompt frame gives the prompt back
    assert (prompt_mask & output).sum() / (prompt_mask | output).sum() > 0.9
    assert all(f.masks[1].shape == (HEIGHT, WIDTH) and f.masks[1].dtype == bool for f in collected)
    session = segmenter.session(frames)
    session.add_prompt(1, samkit.Mask(video.masks[1][0]))
    assert [f.frame_idx for f in session.propagate(max_frames=3)] == [0, 1, 2]
    session.add_prompt(3, samkit.Points([[100, 50]], frame=5))  # a new object, late in the video
    corrected = session.correct(1, samkit.Points([[30, 40]], frame=2))  # a correction on a tracked frame
    assert set(corrected.masks) == {1, 3}
    later = list(session.propagate(start_frame=2))
    assert [sorted(f.masks) for f in later] == [[1]] * 3 + [[1, 3]] * 5
    session.remove_object(3)
    assert session.object_ids == [1]
    session.reset()
    assert session.object_ids == []


@pytest.mark.parametrize("action, message", [
    (lambda s, v: s.add_prompt(1, samkit.Mask(v.masks[1][0], frame=10)), "outside the video"),
    (lambda s, v: s.add_prompt(1, samkit.Mask(np.ones((HEIGHT, WIDTH + 1), bool))), "video is 128x96"),
    (lambda s, v: s.add_prompt(1, samkit.Mask(np.zeros((HEIGHT, WIDTH), bool))), "empty"),
    (lambda s, v: s.correct(7, samkit.Points([[3, 4]])), "cannot correct object 7"),
    (lambda s, v: s.remove_object(7), "cannot remove object 7"),
    (lambda s, v: s.add_prompt(0, samkit.Points([[3, 4]])), "positive ints"),
    (lambda s, v: s.add_prompt(1, "a dog"), "Points, Box or Mask"),
    (lambda s, v: s.add_prompt(1, [samkit.Mask(v.masks[1][0]), samkit.Points([[3, 4]])]), "either one Mask"),
    (lambda s, v: list(s.propagate()), "no object has a prompt"),
], ids=["frame", "mask-size", "empty-mask", "unknown-correction", "unknown-remove", "obj-id", "type", "mixed",
        "no-prompt"])
def test_bad_session_input(segmenter, video, action, message):
    session = segmenter.session(list(video.frames))
    with pytest.raises(InputError, match=message):
        action(session, video)


def test_bad_predict_input(segmenter, video, tmp_path):
    frames = list(video.frames)
    mask = samkit.Mask(video.masks[1][0])
    with pytest.raises(InputError):
        segmenter.predict([], prompts={1: mask})
    with pytest.raises(InputError, match="not found"):
        segmenter.predict(str(tmp_path / "missing"), prompts={1: mask})
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "00000.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(InputError):
        segmenter.predict(str(tmp_path / "broken"), prompts={1: mask})
    with pytest.raises(InputError, match="at least one prompt"):
        segmenter.predict(frames, prompts={})
    with pytest.raises(InputError, match="start_frame 12"):
        segmenter.predict(frames, prompts={1: mask}, start_frame=12)
    with pytest.raises(InputError, match="max_frames"):
        segmenter.predict(frames, prompts={1: mask}, max_frames=0)


def peak_state(segmenter, num_frames):
    """Peak live tree nodes and stored per-frame outputs while tracking ``num_frames`` frames."""
    clip = synthetic_video(num_frames=num_frames, height=48, width=64, seed=2)
    session = segmenter.session(list(clip.frames))
    session.add_prompt(1, samkit.Mask(clip.masks[1][0]))
    session.add_prompt(2, samkit.Mask(clip.masks[2][0]))
    gc.collect()
    base = Node.alive
    peak_nodes = peak_outputs = peak_cache = 0
    for _ in session.propagate():
        stats = session.stats()
        peak_nodes = max(peak_nodes, Node.alive - base)
        peak_outputs = max(peak_outputs, stats["stored_outputs"])
        peak_cache = max(peak_cache, stats["cached_frames"])
    return peak_nodes, peak_outputs, peak_cache


@pytest.mark.slow
def test_state_does_not_grow_with_video_length(segmenter):
    short = peak_state(segmenter, 24)
    long = peak_state(segmenter, 96)
    retention = segmenter.tracker.retention
    assert long[1] <= 2 * retention and short[1] <= 2 * retention  # stored outputs: a window per object
    assert long[2] <= 2  # decoded frames cache
    assert long[0] <= short[0] * 1.1 + 3 * 2  # live tree nodes
