"""VideoResult: closing and context-manager use, safe per-object folder names, overlay order and cost."""

import os

import av
import numpy as np
import pytest
from helpers import count_decodes, write_video
from PIL import Image

from samkit import FrameResult, InputError, VideoResult
from samkit.io.video import open_video
from samkit.io.video_file import DEFAULT_CACHE_FRAMES, FileVideo

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

HEIGHT, WIDTH = 16, 24


def box_mask(top, left, bottom, right):
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[top:bottom, left:right] = True
    return mask


def colour(index):
    """A distinct flat colour per frame, far enough apart to survive a lossy codec."""
    return (10 * index % 250, 250 - 7 * index % 250, 60 + 5 * index % 190)


def flat(index):
    frame = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    frame[...] = colour(index)
    return frame


def write_mp4(path, count, gop):
    return write_video(path, (flat(index) for index in range(count)), options={"crf": "10", "sc_threshold": "0"},
                       gop=gop)


def read_mp4(path):
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def frames_of(indices, record=None):
    """FrameResults with object 1 on the left third, in the given order; ``record`` logs progress."""
    try:
        for index in indices:
            if record is not None:
                record.append(index)
            yield FrameResult(index, {1: box_mask(0, 0, HEIGHT, WIDTH // 3)}, {1: 1.0})
    finally:
        if record is not None:
            record.append("closed")


def open_descriptors():
    return len(os.listdir("/proc/self/fd"))


# ---------------------------------------------------------------- close / with


def test_with_block_stops_the_stream_and_releases_the_video(tmp_path):
    produced = []
    video = FileVideo(write_mp4(tmp_path / "clip.mp4", 6, gop=3))
    with VideoResult(frames_of(range(6), produced), video=video) as result:
        first = next(iter(result))
        assert first.frame_idx == 0 and not video.closed
    assert produced == [0, "closed"]  # the producer (the model) was stopped, not run to the end
    assert video.closed
    with pytest.raises(InputError, match="already been iterated"):
        iter(result)
    result.close()  # idempotent


def test_close_before_iterating_stops_the_producer():
    produced = []
    frames = frames_of(range(3), produced)
    next(frames)  # the producer has started
    result = VideoResult(frames)
    result.close()
    assert produced == [0, "closed"]


def test_a_finished_stream_closes_the_video_file(tmp_path):
    path = write_mp4(tmp_path / "clip.mp4", 5, gop=5)
    before = open_descriptors()
    video = FileVideo(path)

    def tracked():  # a model reading the frames it reports on
        for index in range(5):
            video[index]
            yield FrameResult(index, {1: box_mask(0, 0, 4, 4)}, {1: 0.5})

    result = VideoResult(tracked(), video=video)
    result.save(tmp_path / "out", format="davis")
    assert video.closed and open_descriptors() == before
    assert len(os.listdir(tmp_path / "out")) == 5
    assert np.abs(video[2].reshape(-1, 3).mean(axis=0) - colour(2)).max() < 6  # still readable: reopens
    video.close()


def test_collected_results_stay_readable_after_close():
    result = VideoResult(frames_of(range(3)))
    frames = result.collect()
    result.close()
    assert [frame.frame_idx for frame in result] == [0, 1, 2] and result.collect() is frames


# ---------------------------------------------------------------- per-object folder names

BAD_NAMES = ["../x", "..", ".", "a/b", "a\\b", "", "   ", "x\0y", 7, None]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_object_names_that_are_not_one_plain_folder_are_refused(tmp_path, name):
    out = tmp_path / "out"
    produced = []
    with pytest.raises(InputError, match="object_names"):
        VideoResult(frames_of(range(2), produced), object_names={1: name})
    result = VideoResult(frames_of(range(2), produced))
    with pytest.raises(InputError, match="object_names"):
        result.save(out, format="per-object", object_names={1: name})
    assert produced == [] and not out.exists() and sorted(os.listdir(tmp_path)) == []
    assert len(result.collect()) == 2  # nothing was consumed by the refused save


def test_object_names_must_be_distinct_and_keyed_by_object_ids(tmp_path):
    with pytest.raises(InputError, match="same folder name"):
        VideoResult(frames_of(range(1)), object_names={1: "car", 2: "car"})
    with pytest.raises(InputError, match="object ids"):
        VideoResult(frames_of(range(1)), object_names={0: "car"})
    VideoResult(frames_of(range(2)), object_names={1: "car.v2"}).save(tmp_path, format="per-object")
    assert sorted(os.listdir(tmp_path / "car.v2")) == ["00000.png", "00001.png"]


# ---------------------------------------------------------------- overlay


def test_overlay_of_a_reverse_run_plays_forward(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in range(6):
        Image.fromarray(flat(index)).save(folder / f"{index:05d}.png")
    result = VideoResult(frames_of([5, 4, 3, 2, 1]), video=open_video(folder))  # as reverse=True yields
    result.save(tmp_path / "out", format="overlay")
    decoded = read_mp4(tmp_path / "out" / "overlay.mp4")
    assert len(decoded) == 5
    for frame, index in zip(decoded, [1, 2, 3, 4, 5]):
        outside = frame[2:-2, WIDTH // 3 + 3 : -2].reshape(-1, 3).mean(axis=0)
        assert np.abs(outside - colour(index)).max() < 8, index


def test_overlay_lagging_the_tracker_decodes_each_frame_once(tmp_path, monkeypatch):
    count, lag = 40, 2 * DEFAULT_CACHE_FRAMES  # results lag the tracker's reads by more than the cache
    path = write_mp4(tmp_path / "clip.mp4", count, gop=count)  # one keyframe: a seek re-decodes from 0
    decoded = count_decodes(monkeypatch)
    video = FileVideo(path)

    def tracked():
        for read in range(count + lag):
            if read < count:
                video[read]
            if read >= lag:
                yield FrameResult(read - lag, {1: box_mask(0, 0, HEIGHT, WIDTH // 3)}, {1: 1.0})

    VideoResult(tracked(), video=video).save(tmp_path / "out", format="overlay")
    # the tracker decodes every frame once, the overlay once more (frame 0 also when opening)
    assert decoded[0] <= 2 * count + 1
    written = read_mp4(tmp_path / "out" / "overlay.mp4")
    assert len(written) == count
    for index in (0, count // 2, count - 1):
        outside = written[index][2:-2, WIDTH // 3 + 3 : -2].reshape(-1, 3).mean(axis=0)
        assert np.abs(outside - colour(index)).max() < 8, index
