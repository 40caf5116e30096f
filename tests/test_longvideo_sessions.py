"""LongVideoSession lifecycle: changes during propagation, close(), two threads, bounded pending frames."""

import gc
import threading
import time
import warnings

import numpy as np
import pytest

import samkit
from samkit import InputError
from samkit.io.video import SequenceVideo
from samkit.longvideo import TreeConfig
from samkit.longvideo.tree import Choice, Node
from samkit.samples import synthetic_video

HEIGHT, WIDTH = 48, 64
NUM_FRAMES = 6
SWITCH_PAUSE = 0.001
"""Seconds a thread sleeps inside the model so that the other thread runs in between (forces interleaving)."""


def load(tree):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return samkit.load("sam2long", backbone="tiny-sam2", device="cpu", tree=tree)


@pytest.fixture(scope="module")
def segmenter(one_torch_thread):
    """Plain SAM 2 (one pathway, cheapest): the session lifecycle does not depend on the tree."""
    return load("sam2")


@pytest.fixture(scope="module")
def video():
    return synthetic_video(num_frames=NUM_FRAMES, height=HEIGHT, width=WIDTH, seed=1)


def prompted(segmenter, video):
    session = segmenter.session(list(video.frames))
    session.add_prompt(1, samkit.Mask(video.masks[1][0]))
    session.add_prompt(2, samkit.Points([[45, 25]]))
    return session


def summary(frames):
    return [(f.frame_idx, {k: m.copy() for k, m in f.masks.items()}, dict(f.scores)) for f in frames]


def assert_same(expected, actual):
    assert [f for f, _, _ in actual] == [f for f, _, _ in expected]
    for (_, masks, scores), (_, expected_masks, expected_scores) in zip(actual, expected):
        assert sorted(masks) == sorted(expected_masks) and scores == expected_scores
        for obj_id in masks:
            np.testing.assert_array_equal(masks[obj_id], expected_masks[obj_id])


# ------------------------------------------------------------------------- changes while propagating


@pytest.mark.parametrize("change, message", [
    (lambda s, v: s.remove_object(1), "remove object 1"),
    (lambda s, v: s.add_prompt(3, samkit.Points([[50, 25]], frame=4)), "add object 3"),
    (lambda s, v: s.reset(), "reset"),
], ids=["remove", "add", "reset"])
def test_objects_cannot_change_while_propagate_is_iterated(segmenter, video, change, message):
    expected = summary(prompted(segmenter, video).propagate())
    session = prompted(segmenter, video)
    frames = session.propagate()
    head = [next(frames), next(frames)]
    with pytest.raises(InputError, match=f"cannot {message}.*propagate\\(\\) is being iterated"):
        change(session, video)
    assert session.object_ids == [1, 2]
    assert_same(expected, summary(head) + summary(frames))  # the refused change left the propagation intact
    change(session, video)  # allowed once the iteration is over


def test_correction_during_propagation_applies_to_the_next_one(segmenter, video):
    expected = summary(prompted(segmenter, video).propagate())
    session = prompted(segmenter, video)
    frames = session.propagate()
    head = [next(frames) for _ in range(3)]
    corrected = session.correct(1, samkit.Points([[15, 20], [40, 10]], [1, 0], frame=4))
    assert sorted(corrected.masks) == [1, 2]
    assert_same(expected, summary(head) + summary(frames))  # the running propagation is unaffected
    again = summary(session.propagate())
    assert not np.array_equal(again[4][1][1], expected[4][1][1])  # frame 4 is now a prompt frame


def test_closing_the_iterator_ends_the_propagation(segmenter, video):
    session = prompted(segmenter, video)
    frames = session.propagate()
    next(frames)
    frames.close()
    session.remove_object(2)
    assert session.object_ids == [1]


def test_a_newer_propagation_supersedes_the_older_iterator(segmenter, video):
    session = prompted(segmenter, video)
    older = session.propagate()
    next(older)
    newer = session.propagate(start_frame=0)
    assert next(newer).frame_idx == 0
    with pytest.raises(InputError, match="newer propagate"):
        next(older)
    assert len(list(newer)) == NUM_FRAMES - 1


# ------------------------------------------------------------------------------------------- close


class CountingVideo(SequenceVideo):
    closed = 0

    def close(self):
        CountingVideo.closed += 1


def test_close_releases_the_video_and_state(segmenter, video, tmp_path, monkeypatch):
    import av

    from samkit.io.video import FileVideo

    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("h264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(4):
            frame = np.full((48, 64, 3), 40 * index, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    calls = []
    original = FileVideo.close
    monkeypatch.setattr(FileVideo, "close", lambda self: (calls.append(self), original(self)))
    with segmenter.session(str(path)) as session:
        session.add_prompt(1, samkit.Points([[8, 8]]))
        assert [f.frame_idx for f in session.propagate()] == [0, 1, 2, 3]
    assert len(calls) == 1 and calls[0] is session.video
    assert session.state is None and session.closed
    session.close()  # idempotent
    assert len(calls) == 1
    for action in (lambda: session.add_prompt(1, samkit.Points([[8, 8]])), lambda: list(session.propagate()),
                   session.reset, session.stats):
        with pytest.raises(InputError, match="closed"):
            action()
    # a source the caller opened stays the caller's to close
    source = CountingVideo(list(video.frames))
    with segmenter.session(source):
        pass
    assert CountingVideo.closed == 0


def test_close_during_propagation_stops_it(segmenter, video):
    session = prompted(segmenter, video)
    frames = session.propagate()
    next(frames)
    session.close()
    with pytest.raises(InputError, match="closed"):
        next(frames)


# ------------------------------------------------------------------------------------------ threads


def job(segmenter, clip):
    """Prompts, propagation, a correction on a tracked frame, and a second propagation from before it."""
    session = prompted(segmenter, clip)
    first = summary(session.propagate())
    session.correct(1, samkit.Points([[15, 20], [40, 10]], [1, 0], frame=3))
    second = summary(session.propagate(start_frame=2))
    session.close()
    return first + second


def test_two_threads_track_two_videos_through_one_segmenter(one_torch_thread, video):
    # the official preset uses every piece of per-step state: key weights, captured decoder tokens, and
    # prompts that set two sam2 flags (corrections as conditioning frames, no hole filling)
    segmenter = load("official")
    model = segmenter.model
    flags = (model.add_all_frames_to_correct_as_cond, model.fill_hole_area)
    clips = [video, synthetic_video(num_frames=NUM_FRAMES, height=HEIGHT, width=WIDTH, seed=2)]
    expected = [job(segmenter, clip) for clip in clips]
    # pause inside the model between where per-step state is set and where it is read
    handles = [model.memory_attention.register_forward_pre_hook(lambda *args: time.sleep(SWITCH_PAUSE)),
               model.sam_mask_decoder.register_forward_hook(lambda *args: time.sleep(SWITCH_PAUSE))]
    results, errors = [None, None], []
    start = threading.Barrier(2)

    def run(index):
        try:
            start.wait()
            results[index] = job(segmenter, clips[index])
        except Exception as error:  # noqa: BLE001 - re-raised in the main thread below
            errors.append(error)

    try:
        threads = [threading.Thread(target=run, args=(index,)) for index in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for handle in handles:
            handle.remove()
    if errors:
        raise errors[0]
    for index in range(2):
        assert_same(expected[index], results[index])
    assert (model.add_all_frames_to_correct_as_cond, model.fill_hole_area) == flags
    segmenter.tracker.close()


# ---------------------------------------------------------------------------------- pending frames


def diverging_selection(parent_scores, ious, object_scores, *, num_pathways, **_):
    """Each pathway keeps its own candidate ``slot``: pathways never share a node again."""
    import math

    return [Choice(slot, slot, parent_scores[slot] + math.log(ious[slot][slot] + 1e-5)) for slot in range(num_pathways)]


def peak_pending(segmenter, num_frames):
    """Peak frames waiting and peak live tree nodes (sampled before every tracked frame) while a never-merging
    object streams; and how many frames were yielded before the last one was tracked."""
    clip = synthetic_video(num_frames=num_frames, height=HEIGHT, width=WIDTH, seed=2)
    session = segmenter.session(list(clip.frames))
    session.add_prompt(1, samkit.Mask(clip.masks[1][0]))
    gc.collect()
    base = Node.alive
    samples, steps = [], []
    tracker = segmenter.tracker
    step = type(tracker)._step

    def sampling_step(state, frame_idx, *args):
        samples.append((session.stats()["pending_frames"], Node.alive - base))
        steps.append(frame_idx)
        return step(tracker, state, frame_idx, *args)

    tracker._step = sampling_step
    try:
        yielded = [(frame.frame_idx, len(steps)) for frame in session.propagate()]
    finally:
        del tracker._step
    assert [frame for frame, _ in yielded] == list(range(num_frames))
    session.close()
    early = sum(steps_run < num_frames for _, steps_run in yielded)
    return max(pending for pending, _ in samples), max(nodes for _, nodes in samples), early


@pytest.mark.parametrize("cap", [3, None])
def test_pending_frames_stay_flat_when_pathways_never_merge(one_torch_thread, monkeypatch, cap):
    from samkit.longvideo import selection

    monkeypatch.setattr(selection, "select_pathways", diverging_selection)
    segmenter = load(TreeConfig.paper().replace(max_pending_frames=cap, max_valid_scan=2))
    short, long = peak_pending(segmenter, 8), peak_pending(segmenter, 16)
    if cap is None:  # without a bound every frame after the warm-up waits for the end of the video
        assert long[0] - short[0] == 8 and long[1] > short[1] + 3 * 6
        assert long[2] == short[2] == 2  # only the prompt and warm-up frames stream
    else:
        assert short[0] == long[0] == cap - 1
        assert long[1] == short[1]
        assert long[2] > 16 - cap  # frames keep streaming
    segmenter.tracker.close()
