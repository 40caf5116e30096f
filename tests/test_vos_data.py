"""VOS benchmark layouts (DAVIS 2017, SA-V, LVOS v2) on tiny fake dataset trees."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import samkit
from samkit.errors import InputError
from samkit.datasets.vos import expected_outputs, is_complete, list_videos
from samkit.results import FrameResult, VideoResult

H, W = 6, 8


def write_frames(folder, names) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.fromarray(np.zeros((H, W, 3), dtype=np.uint8)).save(folder / f"{name}.jpg")


def write_labels(path, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(labels.astype(np.uint8))
    image.putpalette([channel for index in range(256) for channel in (index, 255 - index, index)])
    image.save(path)


def write_binary(path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)


def block(rows: slice, cols: slice) -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    mask[rows, cols] = True
    return mask


FIVE = [f"{t:05d}" for t in range(5)]


@pytest.fixture
def davis_root(tmp_path):
    root = tmp_path / "DAVIS"
    first = np.zeros((H, W), dtype=np.uint8)
    first[0:2, 0:3] = 1
    first[3:5, 4:8] = 2
    first[5, :] = 255  # void
    for video in ("bear", "camel"):
        write_frames(root / "JPEGImages" / "480p" / video, FIVE)
        write_labels(root / "Annotations" / "480p" / video / "00000.png", first)
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("camel\n")
    return root


@pytest.fixture
def sav_root(tmp_path):
    root = tmp_path / "sav_val"
    names = [f"{t:05d}" for t in range(12)]
    write_frames(root / "JPEGImages_24fps" / "sav_000001", names)
    annotations = root / "Annotations_6fps" / "sav_000001"
    for name in ("00000", "00004", "00008"):
        write_binary(annotations / "000" / f"{name}.png", block(slice(0, 2), slice(0, 2)))
        # object 001 is empty on the first annotated frame and appears on frame 00004
        present = name != "00000"
        write_binary(annotations / "001" / f"{name}.png", block(slice(2, 4), slice(2, 6)) & present)
    (root / "sav_val.txt").write_text("sav_000001\n")
    return root


@pytest.fixture
def lvos_root(tmp_path):
    root = tmp_path / "LVOS"
    names = [f"{t:08d}" for t in range(1, 11)]
    write_frames(root / "valid" / "JPEGImages" / "v1", names)
    first = np.zeros((H, W), dtype=np.uint8)
    first[0:2, 0:2] = 1
    later = first.copy()
    later[4:6, 5:8] = 3  # object 3 first appears on frame 00000006 (index 5)
    write_labels(root / "valid" / "Annotations" / "v1" / "00000001.png", first)
    write_labels(root / "valid" / "Annotations" / "v1" / "00000006.png", later)
    return root


def test_davis_split_frames_and_first_frame_objects(davis_root):
    entries = list_videos(davis_root, "davis", split="val")
    assert [entry.name for entry in entries] == ["camel"]
    entry = entries[0]
    assert entry.frames_dir == davis_root / "JPEGImages" / "480p" / "camel"
    assert entry.frame_names == tuple(FIVE)
    prompts = entry.annotations
    assert list(prompts) == [1, 2]  # void 255 is not an object
    assert all(prompt.frame_index == 0 and prompt.frame_name == "00000" for prompt in prompts.values())
    np.testing.assert_array_equal(prompts[1].mask, block(slice(0, 2), slice(0, 3)))
    np.testing.assert_array_equal(prompts[2].mask, block(slice(3, 5), slice(4, 8)))
    assert [entry.name for entry in list_videos(davis_root, "davis")] == ["bear", "camel"]


def test_davis_prompts_are_samkit_masks(davis_root):
    prompts = list_videos(davis_root, "davis", split="val")[0].prompts()
    assert set(prompts) == {1, 2}
    assert isinstance(prompts[2], samkit.Mask) and prompts[2].frame == 0
    np.testing.assert_array_equal(prompts[2].mask, block(slice(3, 5), slice(4, 8)))


def test_sav_objects_start_at_their_first_non_empty_annotation(sav_root):
    entries = list_videos(sav_root, "sav", split="sav_val")
    assert [entry.name for entry in entries] == ["sav_000001"]
    entry = entries[0]
    assert len(entry.frame_names) == 12
    prompts = entry.annotations
    # folders 000 / 001 -> samkit ids 1 / 2 (ids start at 1); names map back to the folders
    assert list(prompts) == [1, 2]
    assert entry.object_names == {1: "000", 2: "001"}
    assert prompts[1].frame_index == 0
    assert (prompts[2].frame_index, prompts[2].frame_name) == (4, "00004")
    np.testing.assert_array_equal(prompts[2].mask, block(slice(2, 4), slice(2, 6)))


def test_lvos_objects_appearing_later_are_prompted_where_they_appear(lvos_root):
    for root, split in ((lvos_root, None), (lvos_root, "valid"), (lvos_root / "valid", None)):
        entry = list_videos(root, "lvos", split=split)[0]
        assert entry.name == "v1"
        prompts = entry.annotations
        assert list(prompts) == [1, 3]
        assert (prompts[1].frame_index, prompts[3].frame_index) == (0, 5)
        assert prompts[3].frame_name == "00000006"
        np.testing.assert_array_equal(prompts[3].mask, block(slice(4, 6), slice(5, 8)))
        assert entry.first_prompt_index == 0


def test_root_that_does_not_match_the_layout_names_the_expected_folder(davis_root, sav_root, tmp_path):
    with pytest.raises(InputError, match="JPEGImages_24fps"):
        list_videos(davis_root, "sav")
    with pytest.raises(InputError, match="JPEGImages/480p"):
        list_videos(sav_root, "davis")
    with pytest.raises(InputError, match="does not look like a lvos dataset"):
        list_videos(davis_root, "lvos")  # JPEGImages/480p holds video folders, not frames
    with pytest.raises(InputError, match="valid/JPEGImages"):
        list_videos(tmp_path, "lvos")
    with pytest.raises(InputError, match="layout"):
        list_videos(davis_root, "youtube")
    with pytest.raises(InputError, match="not a folder"):
        list_videos(tmp_path / "absent", "davis")
    with pytest.raises(InputError, match="test-dev.txt"):
        list_videos(davis_root, "davis", split="test-dev")


def test_split_naming_a_video_without_annotations_is_an_error(davis_root):
    (davis_root / "ImageSets" / "2017" / "val.txt").write_text("camel\nmissing-video\n")
    with pytest.raises(InputError, match="missing-video"):
        list_videos(davis_root, "davis", split="val")


def test_annotation_without_a_matching_frame_is_an_error(lvos_root):
    labels = np.zeros((H, W), dtype=np.uint8)
    labels[0, 0] = 4
    write_labels(lvos_root / "valid" / "Annotations" / "v1" / "00000099.png", labels)
    entry = list_videos(lvos_root, "lvos")[0]
    with pytest.raises(InputError, match="00000099"):
        _ = entry.annotations


def test_expected_outputs_davis_format_and_completion(davis_root, tmp_path):
    entry = list_videos(davis_root, "davis", split="val")[0]
    out = tmp_path / "out"
    expected = expected_outputs(entry, out, "davis")
    assert expected == [out / "camel" / f"{name}.png" for name in FIVE]
    assert not is_complete(entry, out, "davis")
    for path in expected[:-1]:
        write_labels(path, np.zeros((H, W), dtype=np.uint8))
    assert not is_complete(entry, out, "davis")  # an interrupted run misses its last frames
    write_labels(expected[-1], np.zeros((H, W), dtype=np.uint8))
    assert is_complete(entry, out, "davis")


def test_is_complete_after_video_result_save(davis_root, tmp_path):
    """The paths agree with what ``VideoResult.save(out / entry.name, format="davis")`` writes."""
    entry = list_videos(davis_root, "davis", split="val")[0]
    frames = [FrameResult(t, {1: block(slice(0, 2), slice(0, 2))}) for t in range(len(entry.frame_names))]
    result = VideoResult(frames, frame_names=list(entry.frame_names))
    assert not is_complete(entry, tmp_path, "davis")
    result.save(tmp_path / entry.name, format="davis")
    assert is_complete(entry, tmp_path, "davis")


def test_expected_outputs_per_object_start_at_each_prompt(sav_root, lvos_root, tmp_path):
    entry = list_videos(sav_root, "sav")[0]
    expected = expected_outputs(entry, tmp_path, "per-object")
    video = tmp_path / "sav_000001"
    # folder names are the SA-V object folders; object 001 is tracked from frame 4 on
    assert expected == [video / "000" / f"{t:05d}.png" for t in range(12)] + [
        video / "001" / f"{t:05d}.png" for t in range(4, 12)
    ]
    lvos = list_videos(lvos_root, "lvos")[0]
    lvos_expected = expected_outputs(lvos, tmp_path, "per-object")
    assert lvos_expected[10] == tmp_path / "v1" / "003" / "00000006.png"
    assert len(lvos_expected) == 10 + 5


def test_expected_outputs_single_file_formats(davis_root, tmp_path):
    entry = list_videos(davis_root, "davis", split="val")[0]
    assert expected_outputs(entry, tmp_path, "coco-rle") == [tmp_path / "camel" / "masks.json"]
    assert expected_outputs(entry, tmp_path, "overlay") == [tmp_path / "camel" / "overlay.mp4"]
    with pytest.raises(InputError, match="format"):
        expected_outputs(entry, tmp_path, "mp4")


def test_is_complete_after_per_object_save_with_sav_object_names(sav_root, tmp_path):
    """Per-object outputs land in the SA-V ground-truth folders (000, 001) the evaluator pairs them with."""
    entry = list_videos(sav_root, "sav")[0]
    prompts = entry.annotations
    frames = [
        FrameResult(t, {obj_id: prompt.mask for obj_id, prompt in prompts.items() if t >= prompt.frame_index})
        for t in range(len(entry.frame_names))
    ]
    result = VideoResult(frames, frame_names=list(entry.frame_names))
    result.save(tmp_path / entry.name, format="per-object", object_names=entry.object_names)
    assert (tmp_path / entry.name / "000" / "00000.png").is_file()
    assert is_complete(entry, tmp_path, "per-object")
    (tmp_path / entry.name / "001" / "00011.png").unlink()
    assert not is_complete(entry, tmp_path, "per-object")


def test_a_video_without_frames_fails_alone(davis_root):
    import shutil

    entries = list_videos(davis_root, "davis")
    assert len(entries) >= 2
    broken = entries[0]
    shutil.rmtree(broken.frames_dir)
    entries = list_videos(davis_root, "davis")
    assert entries[0].name == broken.name
    with pytest.raises(InputError, match=f"video {broken.name}: its frame folder"):
        _ = entries[0].frame_names
    assert entries[1].frame_names
