"""Compute efficiency of the memory tree: collapsed pathways run once, distinct pathways batch correctly."""

import warnings
from collections import defaultdict

import pytest
import torch

import samkit
from samkit.io.video import open_video
from samkit.longvideo import TreeConfig
from samkit.longvideo.predictor import TreeTracker
from samkit.samples import synthetic_video

NUM_FRAMES = 8
NEVER_CERTAIN = 1e9  # no object score reaches it: every frame uncertain, pathways stay distinct
ALWAYS_CERTAIN = 0.0  # every object score passes it: plain top-P, so pathways collapse
LOGIT_TOLERANCE = 1e-5
"""Batched vs one-by-one logits: measured max difference 3e-7 (CPU, fp32); the masks are identical."""


@pytest.fixture(scope="module")
def model():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return samkit.load("sam2long", backbone="tiny-sam2", device="cpu").model


@pytest.fixture(scope="module")
def video():
    return synthetic_video(num_frames=NUM_FRAMES, height=96, width=128, seed=1)


@pytest.fixture(scope="module")
def one_by_one(model, video):
    """The never-collapse case (P=3 distinct pathways) without batching: (outputs, module calls)."""
    return track(model, video, TreeConfig.paper().replace(uncertainty_threshold=NEVER_CERTAIN))


class ModuleCalls:
    """Per propagated frame: the batch size of every call of memory attention, mask decoder, memory encoder."""

    MODULES = ("memory_attention", "sam_mask_decoder", "memory_encoder")

    def __init__(self, model, tracker):
        self.frame = None
        self.calls = {name: defaultdict(list) for name in self.MODULES}
        self.handles = [getattr(model, name).register_forward_pre_hook(self._recorder(name), with_kwargs=True)
                        for name in self.MODULES]
        step = tracker._step

        def step_on_frame(state, frame_idx, *args):
            self.frame = frame_idx
            try:
                return step(state, frame_idx, *args)
            finally:
                self.frame = None

        tracker._step = step_on_frame

    def _recorder(self, name):
        def record(module, args, kwargs):
            if self.frame is None:  # prompt handling, not propagation
                return
            first = kwargs.get("curr", kwargs.get("image_embeddings", args[0] if args else None))
            if isinstance(first, list):
                first = first[0]
                batch = first.shape[1]  # memory attention input is (HW, B, C)
            else:
                batch = first.shape[0]
            self.calls[name][self.frame].append(batch)
        return record

    def remove(self):
        for handle in self.handles:
            handle.remove()


def track(model, video, tree):
    """Two objects prompted on frame 0; returns (outputs, per-frame module calls)."""
    tracker = TreeTracker(model, tree)
    calls = ModuleCalls(model, tracker)
    try:
        state = tracker.init_state(open_video(list(video.frames)))
        tracker.add_mask(state, 0, 1, video.masks[1][0])
        tracker.add_mask(state, 0, 2, video.masks[2][0])
        outputs = [(frame, ids, logits.clone()) for frame, ids, logits, _ in tracker.propagate(state)]
    finally:
        calls.remove()
        tracker.close()
    return outputs, calls.calls


@pytest.mark.parametrize("batch", [False, True], ids=["one-by-one", "batched"])
def test_collapsed_pathways_are_computed_once_per_frame(model, video, batch):
    tree = TreeConfig.paper().replace(uncertainty_threshold=ALWAYS_CERTAIN, batch_pathways=batch)
    _, calls = track(model, video, tree)
    tracked = list(range(1, NUM_FRAMES))
    for name in ModuleCalls.MODULES:
        assert sorted(calls[name]) == tracked
        # one call per object and frame, each for one pathway: the P=3 pathways share one node
        assert all(calls[name][frame] == [1, 1] for frame in tracked), (name, dict(calls[name]))


def test_distinct_pathways_run_one_by_one_without_batching(one_by_one):
    _, calls = one_by_one
    # frame 1: greedy warm-up, one node per object; frame 2: that node expands into 3 distinct children;
    # from frame 3 on each object has 3 distinct pathways
    assert all(calls[name][1] == [1, 1] for name in ModuleCalls.MODULES)
    assert calls["memory_attention"][2] == calls["sam_mask_decoder"][2] == [1, 1]
    assert calls["memory_encoder"][2] == [1] * 6
    for frame in range(3, NUM_FRAMES):
        for name in ModuleCalls.MODULES:
            assert calls[name][frame] == [1] * 6, (name, frame, calls[name][frame])


def test_batched_pathways_match_one_by_one(model, video, one_by_one):
    expected, _ = one_by_one
    actual, calls = track(model, video, TreeConfig.paper().replace(uncertainty_threshold=NEVER_CERTAIN,
                                                                   batch_pathways=True))
    assert calls["memory_encoder"][2] == [3, 3]  # the 3 children of each object's warm-up node
    for frame in range(3, NUM_FRAMES):
        # per object: the 3 pathways in one mask-decoder call and one memory-encoder call; memory attention
        # groups them by memory length (3 pathways in as many calls as there are distinct lengths)
        assert calls["sam_mask_decoder"][frame] == [3, 3]
        assert calls["memory_encoder"][frame] == [3, 3]
        assert sum(calls["memory_attention"][frame]) == 6
    assert any(max(calls["memory_attention"][frame]) > 1 for frame in range(3, NUM_FRAMES))
    assert [(frame, ids) for frame, ids, _ in actual] == [(frame, ids) for frame, ids, _ in expected]
    foreground = 0
    for (_, _, expected_logits), (_, _, actual_logits) in zip(expected, actual):
        torch.testing.assert_close(actual_logits, expected_logits, rtol=0, atol=LOGIT_TOLERANCE)
        assert torch.equal(actual_logits > 0, expected_logits > 0)
        foreground += int((expected_logits > 0).sum())
    assert foreground > 0


def test_memory_encoder_is_not_batched_when_sam2_separates_objects(model, video, one_by_one):
    # sam2's non_overlap_masks_for_mem_enc would treat a batch of candidates as different objects (with
    # one candidate per call, as one by one, it does nothing)
    expected, _ = one_by_one
    assert not model.non_overlap_masks_for_mem_enc
    model.non_overlap_masks_for_mem_enc = True
    try:
        actual, calls = track(model, video, TreeConfig.paper().replace(uncertainty_threshold=NEVER_CERTAIN,
                                                                       batch_pathways=True))
    finally:
        model.non_overlap_masks_for_mem_enc = False
    for frame in range(3, NUM_FRAMES):
        assert calls["memory_encoder"][frame] == [1] * 6
        assert calls["sam_mask_decoder"][frame] == [3, 3]
    for (_, _, expected_logits), (_, _, actual_logits) in zip(expected, actual):
        torch.testing.assert_close(actual_logits, expected_logits, rtol=0, atol=LOGIT_TOLERANCE)
