"""Video sources: frame folders, video files, lists and generators, read lazily and in the right order."""

import itertools
import os
import random

import av
import numpy as np
import pytest
from helpers import count_decodes, write_video
from PIL import Image

from samkit import InputError
from samkit.io import video as video_module
from samkit.io.video import (
    FileVideo,
    FolderVideo,
    FrameIndexError,
    IterableVideo,
    SequenceVideo,
    natural_sort_key,
    open_video,
)

RNG = np.random.default_rng(1)
HEIGHT, WIDTH = 24, 32


def random_frame(height=HEIGHT, width=WIDTH):
    return RNG.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def flat_frame(colour, height=HEIGHT, width=WIDTH):
    frame = np.empty((height, width, 3), np.uint8)
    frame[...] = colour
    return frame


def frame_colour(index):
    """A distinct, smooth colour per frame so a lossy codec keeps it recognisable."""
    return (8 * index % 256, 255 - 6 * index % 256, 40 + 3 * index % 200)


def write_mp4(path, count, gop=5, fps=10):
    """An H.264 mp4 with a keyframe every ``gop`` frames and B-frames, so seeking is exercised."""
    return write_flat_video(path, "libx264", count, {"crf": "10", "bf": "2", "sc_threshold": "0"}, gop, fps)


def write_flat_video(path, codec, count, options=None, gop=5, fps=10):
    """A video of ``count`` flat frames (colour ``frame_colour(i)``) in the container its suffix names."""
    return write_video(path, (flat_frame(frame_colour(index)) for index in range(count)), codec, options, gop, fps)


@pytest.fixture(scope="module")
def mp4_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    write_mp4(path, count=23)
    return path


# ---------------------------------------------------------------- folders


def test_natural_sort_key_orders_numbers_numerically():
    names = ["10", "2", "1", "frame_12", "frame_9", "00003"]
    assert sorted(names, key=natural_sort_key) == ["1", "2", "00003", "10", "frame_9", "frame_12"]


def test_folder_of_pngs_numeric_order_and_exact_frames(tmp_path):
    frames = {name: random_frame() for name in ("10", "2", "1")}
    for name, frame in frames.items():
        Image.fromarray(frame).save(tmp_path / f"{name}.png")
    (tmp_path / "notes.txt").write_text("not a frame")
    Image.fromarray(random_frame(5, 5)).save(tmp_path / "._3.png")  # macOS metadata file
    video = open_video(tmp_path)
    assert isinstance(video, FolderVideo)
    assert video.frame_names == ["1", "2", "10"]
    assert (video.num_frames, len(video), video.height, video.width, video.fps) == (3, 3, HEIGHT, WIDTH, None)
    read = list(video)
    for frame, name in zip(read, ["1", "2", "10"]):
        assert np.array_equal(frame, frames[name])
    assert np.array_equal(video[2], frames["10"])
    assert np.array_equal(video[-3], frames["1"])
    with pytest.raises(FrameIndexError, match="3 frames"):
        video[3]
    with pytest.raises(IndexError):
        video[-4]


def test_folder_of_jpegs_with_prefixed_names(tmp_path):
    colours = {12: (250, 10, 10), 9: (10, 250, 10), 100: (10, 10, 250)}
    for number, colour in colours.items():
        Image.fromarray(flat_frame(colour)).save(tmp_path / f"frame_{number}.JPG", quality=95)
    video = open_video(str(tmp_path))
    assert video.frame_names == ["frame_9", "frame_12", "frame_100"]
    for frame, number in zip(video, (9, 12, 100)):
        assert np.abs(frame.astype(int) - np.array(colours[number])).max() <= 4


def test_folder_reads_lazily(tmp_path, monkeypatch):
    for index in range(6):
        Image.fromarray(random_frame()).save(tmp_path / f"{index:05d}.png")
    reads = []
    original = video_module.read_image_file
    monkeypatch.setattr(
        video_module, "read_image_file", lambda path: reads.append(path.name) or original(path)
    )
    video = open_video(tmp_path)
    assert reads == []  # size comes from the first frame's header
    list(itertools.islice(iter(video), 2))
    assert reads == ["00000.png", "00001.png"]


def test_folder_corrupt_frame_names_the_file(tmp_path):
    for index in range(3):
        Image.fromarray(random_frame()).save(tmp_path / f"{index:05d}.png")
    (tmp_path / "00001.png").write_bytes(b"garbage")
    video = open_video(tmp_path)
    frames = iter(video)
    next(frames)
    with pytest.raises(InputError, match="00001.png"):
        next(frames)


def test_folder_frame_of_other_size_names_the_file(tmp_path):
    Image.fromarray(random_frame()).save(tmp_path / "0.png")
    Image.fromarray(random_frame(HEIGHT + 2, WIDTH)).save(tmp_path / "1.png")
    video = open_video(tmp_path)
    with pytest.raises(InputError, match="1.png"):
        video[1]


def test_empty_folder_and_missing_paths(tmp_path):
    with pytest.raises(InputError, match="no"):
        open_video(tmp_path)
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(InputError, match="frames"):
        open_video(tmp_path)
    with pytest.raises(InputError, match="missing_dir"):
        open_video(tmp_path / "missing_dir")
    with pytest.raises(InputError, match="readme.txt"):
        open_video(tmp_path / "readme.txt")


def test_folder_with_clashing_stems(tmp_path):
    Image.fromarray(random_frame()).save(tmp_path / "00000.png")
    Image.fromarray(random_frame()).save(tmp_path / "00000.jpg")
    with pytest.raises(InputError, match="00000"):
        open_video(tmp_path)


# ---------------------------------------------------------------- video files


def test_mp4_metadata_and_forward_frames(mp4_path):
    with open_video(mp4_path) as video:
        assert isinstance(video, FileVideo)
        assert (video.num_frames, len(video), video.height, video.width) == (23, 23, HEIGHT, WIDTH)
        assert video.fps == pytest.approx(10.0)
        frames = list(video)
    assert len(frames) == 23
    for index, frame in enumerate(frames):
        assert frame.shape == (HEIGHT, WIDTH, 3) and frame.dtype == np.uint8
        mean = frame.reshape(-1, 3).mean(axis=0)
        assert np.abs(mean - np.array(frame_colour(index))).max() < 4, index


def test_mp4_fixture_has_b_frames_and_several_keyframes(mp4_path):
    with av.open(str(mp4_path)) as container:
        packets = [packet for packet in container.demux(container.streams.video[0]) if packet.size]
    assert any(packet.pts != packet.dts for packet in packets)  # frames are reordered
    assert sum(packet.is_keyframe for packet in packets) == 5


def test_mp4_random_access_matches_forward_iteration(mp4_path):
    forward = list(FileVideo(mp4_path))
    reverse_video = FileVideo(mp4_path)
    for index in reversed(range(len(forward))):
        assert np.array_equal(reverse_video[index], forward[index]), index
    shuffled = list(range(len(forward)))
    random.Random(0).shuffle(shuffled)
    shuffled_video = FileVideo(mp4_path, cache_frames=2)
    for index in shuffled:
        assert np.array_equal(shuffled_video[index], forward[index]), index
    assert np.array_equal(shuffled_video[-1], forward[-1])
    with pytest.raises(FrameIndexError):
        shuffled_video[23]


def test_mp4_reverse_reads_seek_once_per_gop_not_per_frame(mp4_path, monkeypatch):
    repositions = []
    original = FileVideo._reposition
    monkeypatch.setattr(
        FileVideo, "_reposition", lambda self, index: repositions.append(index) or original(self, index)
    )
    video = FileVideo(mp4_path, cache_frames=5)
    for index in reversed(range(23)):
        video[index]
    # 23 frames with a keyframe every 5: one seek per group of 5 cached frames, not one per frame.
    assert len(repositions) <= 6
    repositions.clear()
    for index in range(23):
        video[index]
    assert len(repositions) <= 1  # forward reads continue decoding without seeking


def test_mp4_returned_frames_are_copies(mp4_path):
    video = FileVideo(mp4_path)
    first = video[0]
    first[...] = 0
    assert video[0].max() > 0


def test_corrupt_video_file_names_the_file(tmp_path):
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"\x00" * 64 + b"not a video at all" * 10)
    with pytest.raises(InputError, match="broken.mp4"):
        open_video(path)


def test_video_without_frames_is_input_error(tmp_path):
    path = tmp_path / "empty.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    with pytest.raises(InputError, match="empty.mp4"):
        open_video(path)


# ---------------------------------------------------------------- lists and generators


def test_list_of_mixed_frames(tmp_path):
    frames = [random_frame() for _ in range(3)]
    Image.fromarray(frames[2]).save(tmp_path / "f.png")
    video = open_video([frames[0], Image.fromarray(frames[1]), tmp_path / "f.png"])
    assert isinstance(video, SequenceVideo)
    assert (video.num_frames, video.height, video.width, video.frame_names) == (3, HEIGHT, WIDTH, None)
    for read, expected in zip(video, frames):
        assert np.array_equal(read, expected)
    assert np.array_equal(video[1], frames[1])


def test_array_of_frames_and_single_image():
    stack = np.stack([random_frame() for _ in range(4)])
    video = open_video(stack)
    assert len(video) == 4 and np.array_equal(video[3], stack[3])
    with pytest.raises(InputError, match="single image"):
        open_video(stack[0])
    with pytest.raises(InputError, match="single image"):
        open_video(Image.fromarray(stack[0]))


def test_list_errors_name_the_frame():
    with pytest.raises(InputError, match="empty"):
        open_video([])
    video = open_video([random_frame(), random_frame(), random_frame(HEIGHT, WIDTH + 1)])
    with pytest.raises(InputError, match="frame 2"):
        list(video)
    with pytest.raises(InputError, match="frame 1"):
        open_video([random_frame(), np.zeros((HEIGHT, WIDTH), np.uint8)])[1]


def test_generator_is_read_lazily_and_once():
    frames = [random_frame() for _ in range(5)]
    produced = []

    def generate():
        for index, frame in enumerate(frames):
            produced.append(index)
            yield frame

    video = open_video(generate())
    assert isinstance(video, IterableVideo)
    assert produced == [0]  # only the first frame, to learn the size
    assert (video.height, video.width, video.num_frames, video.fps) == (HEIGHT, WIDTH, None, None)
    assert bool(video)
    with pytest.raises(TypeError, match="not known"):
        len(video)
    with pytest.raises(InputError, match="random access"):
        video[0]
    iterator = iter(video)
    first_two = list(itertools.islice(iterator, 2))
    assert produced == [0, 1]
    rest = list(iterator)
    for read, expected in zip(first_two + rest, frames):
        assert np.array_equal(read, expected)
    with pytest.raises(InputError, match="already"):
        iter(video)


def test_list_of_a_generator_video_works_despite_unknown_length():
    frames = [random_frame() for _ in range(3)]
    read = list(open_video(frame for frame in frames))
    assert len(read) == 3 and np.array_equal(read[2], frames[2])


def test_generator_errors():
    with pytest.raises(InputError, match="empty"):
        open_video(iter([]))
    video = open_video(iter([random_frame(), random_frame(HEIGHT + 1, WIDTH)]))
    with pytest.raises(InputError, match="frame 1"):
        list(video)
    with pytest.raises(InputError, match="frame 0"):
        open_video(iter([np.zeros((HEIGHT, WIDTH, 3), np.float32)]))


def test_unsupported_source_type():
    with pytest.raises(InputError, match="int"):
        open_video(42)


def test_mp4_random_access_falls_back_when_timestamps_do_not_match(mp4_path, monkeypatch):
    forward = list(FileVideo(mp4_path))
    original = FileVideo._read_packet_index

    def shifted_index(self):
        index = original(self)
        index.index_of_pts = {pts + 1: frame for pts, frame in index.index_of_pts.items()}
        return index

    monkeypatch.setattr(FileVideo, "_read_packet_index", shifted_index)
    video = FileVideo(mp4_path, cache_frames=3)
    for index in (20, 4, 12, 0, 22):
        assert np.array_equal(video[index], forward[index]), index
    assert video._packets.seekable is False


# ---------------------------------------------------------------- containers without a frame count



HEADERLESS = [("clip.mkv", "libx264", {"crf": "10", "bf": "2"}), ("clip.mkv", "mpeg4", {"qscale": "2"}),
              ("clip.webm", "libvpx", {"crf": "4", "b": "1M"}), ("clip.webm", "libvpx-vp9", {"crf": "4"})]


@pytest.mark.parametrize("name, codec, options", HEADERLESS, ids=[f"{n}-{c}" for n, c, _ in HEADERLESS])
def test_mkv_and_webm_know_their_length_on_opening(tmp_path, monkeypatch, name, codec, options):
    path = tmp_path / name
    write_flat_video(path, codec, count=23, options=options)
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0  # the container does not state the count
    demuxes = []
    original = FileVideo._read_packet_index
    monkeypatch.setattr(FileVideo, "_read_packet_index", lambda self: demuxes.append(1) or original(self))
    decodes = count_decodes(monkeypatch)
    with open_video(path) as video:
        assert (video.num_frames, len(video)) == (23, 23)
        assert len(demuxes) == 1 and decodes == [1]  # counted from packets: only frame 0 was decoded
        forward = list(video)
        assert len(forward) == 23
        for index in reversed(range(23)):
            assert np.array_equal(video[index], forward[index]), index
        with pytest.raises(FrameIndexError):
            video[23]
    assert len(demuxes) == 1
    for index, frame in enumerate(forward):
        assert np.abs(frame.reshape(-1, 3).mean(axis=0) - frame_colour(index)).max() < 6, index



# ---------------------------------------------------------------- file handles


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_file_video_close_releases_every_handle_and_reading_reopens(mp4_path):
    before = open_descriptors()
    video = FileVideo(mp4_path)
    video[5]
    running = iter(video)
    next(running)
    assert not video.closed and open_descriptors() > before
    video.close()
    assert video.closed and open_descriptors() == before
    with pytest.raises(StopIteration):  # the running iteration was ended
        next(running)
    with FileVideo(mp4_path) as reference:
        expected = list(reference)
    assert np.array_equal(video[7], expected[7])  # reading again reopens the file
    assert not video.closed
    video.close()
    video.close()  # idempotent
    assert video.closed and open_descriptors() == before


def test_finished_iteration_and_release_close_the_file(mp4_path):
    before = open_descriptors()
    video = FileVideo(mp4_path)
    video.release()
    assert video.closed and open_descriptors() == before
    frames = list(video)  # an iteration run to its end closes its own handle
    assert len(frames) == 23 and video.closed and open_descriptors() == before
    with open_video(mp4_path) as other:
        other[3]
    assert other.closed and open_descriptors() == before


def test_fork_reads_with_its_own_decoder_and_cache(mp4_path, monkeypatch):
    video = FileVideo(mp4_path, cache_frames=4)
    with FileVideo(mp4_path) as reference:
        expected = list(reference)
    video[20]
    cached = list(video._cache)
    twin = video.fork()
    assert twin.closed and twin.num_frames == 23 and not video.closed
    for index in range(23):
        assert np.array_equal(twin[index], expected[index]), index
    assert list(video._cache) == cached  # the original's cache is untouched
    twin.close()
    assert not video.closed and np.array_equal(video[19], expected[19])
