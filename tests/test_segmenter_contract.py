"""Every segmenter: one predict order, close() / ``with``, and the thread-safety contract."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import samkit
from samkit.errors import InputError
from samkit.samples import synthetic_video

pytestmark = [pytest.mark.filterwarnings("ignore::samkit.checkpoints.UntrainedWeightsWarning"),
              pytest.mark.usefixtures("one_torch_thread")]

HEIGHT, WIDTH = 64, 80
THREAD_REPEATS = 4
SET_IMAGE_DELAY_S = 0.05


@pytest.fixture(scope="module")
def video():
    return synthetic_video(num_frames=3, height=HEIGHT, width=WIDTH, seed=2)


@pytest.fixture(scope="module")
def image_segmenter():
    return samkit.load("tiny-sam2", device="cpu")


@pytest.fixture(scope="module")
def video_segmenter():
    return samkit.load("sam2", backbone="tiny-sam2", device="cpu")


def frames_of(result) -> list[dict[int, np.ndarray]]:
    return [frame.masks for frame in result]


def test_image_head_takes_the_prompt_positionally(image_segmenter, video):
    image, box = video.frames[0], samkit.Box([10, 10, 50, 40])
    positional = image_segmenter.predict(image, box)
    keyword = image_segmenter.predict(image, prompt=box)
    by_object = image_segmenter.predict(image, prompts={1: box})
    np.testing.assert_array_equal(positional.masks, keyword.masks)
    np.testing.assert_array_equal(positional.masks, by_object.masks)
    assert positional.obj_ids == by_object.obj_ids == [1]
    assert 0 < positional.masks.sum() < positional.masks.size


def test_video_head_takes_the_prompt_positionally(video_segmenter, video):
    """``predict(video, Mask(...))`` used to fail on the video head (its order was video, prompts, prompt)."""
    frames, mask = list(video.frames), samkit.Mask(video.masks[1][0])
    positional = frames_of(video_segmenter.predict(frames, mask))
    by_object = frames_of(video_segmenter.predict(frames, prompts={1: mask}))
    assert [sorted(masks) for masks in positional] == [[1]] * len(frames)
    for left, right in zip(positional, by_object):
        np.testing.assert_array_equal(left[1], right[1])
    assert positional[0][1].any()
    with pytest.raises(InputError, match="a dict of per-object prompts goes in prompts="):
        video_segmenter.predict(frames, {1: mask})
    with pytest.raises(InputError, match="sam2: object 1: prompts must be Points, Box, Mask, got Text"):
        video_segmenter.predict(frames, samkit.Text("the ball"))


def test_close_is_idempotent_and_a_closed_segmenter_refuses_work(video):
    with samkit.load("tiny-sam", device="cpu", image_size=64) as segmenter:
        segmenter.predict(video.frames[0], samkit.Points([[20, 20]]))
        assert segmenter.predictor.is_image_set and not segmenter.closed
    assert segmenter.closed and not segmenter.predictor.is_image_set  # cached image features dropped
    segmenter.close()
    assert "closed" in repr(segmenter)
    with pytest.raises(InputError, match="ImageSegmenter is closed"):
        segmenter.predict(video.frames[0], samkit.Points([[20, 20]]))


def test_closing_a_video_segmenter_closes_its_open_sessions(video):
    segmenter = samkit.load("sam2", backbone="tiny-sam2", device="cpu")
    session = segmenter.session(list(video.frames))
    closed = []
    session.close = lambda: closed.append(True)  # sessions get their own close() in the long-video head
    with segmenter:
        pass
    assert closed == [True]
    segmenter.close()
    assert closed == [True]
    with pytest.raises(InputError, match="LongVideoSegmenter is closed"):
        segmenter.session(list(video.frames))
    with pytest.raises(InputError, match="closed"):
        segmenter.predict(list(video.frames), samkit.Mask(video.masks[1][0]))


def test_two_threads_share_one_image_segmenter(image_segmenter, video, monkeypatch):
    """Each thread predicts its own image; results equal the single-thread ones (no shared-state mix-up).

    ``set_image`` is slowed down so that, without the segmenter's lock, the other thread's image would
    replace the features between ``set_image`` and decoding (this test fails without the lock).
    """
    prompt = samkit.Points([[30, 30], [60, 20]], labels=[1, 0])
    images = [video.frames[0], np.ascontiguousarray(video.frames[2][::-1])]
    expected = [image_segmenter.predict(image, prompt) for image in images]
    assert not np.array_equal(expected[0].logits, expected[1].logits)
    set_image = image_segmenter.predictor.set_image

    def slow_set_image(*args, **kwargs):
        set_image(*args, **kwargs)
        time.sleep(SET_IMAGE_DELAY_S)

    monkeypatch.setattr(image_segmenter.predictor, "set_image", slow_set_image)
    barrier = threading.Barrier(len(images))
    outputs: dict[int, list] = {index: [] for index in range(len(images))}
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            barrier.wait()
            for _ in range(THREAD_REPEATS):
                outputs[index].append(image_segmenter.predict(images[index], prompt))
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(index,)) for index in range(len(images))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for index, results in outputs.items():
        assert len(results) == THREAD_REPEATS
        for result in results:
            np.testing.assert_array_equal(result.logits, expected[index].logits)
            np.testing.assert_array_equal(result.masks, expected[index].masks)
