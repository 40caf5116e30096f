"""Tests of ``samkit.referring.data`` on small files written in the standard layouts."""

import json
import os
import pickle

import numpy as np
import pytest
import torch

from samkit.errors import InputError
from samkit.referring.data import (
    ReferIndex,
    ReferringDataset,
    SyntheticReferringDataset,
    TestTransform,
    TrainTransform,
    load_plain_pickle,
    synthetic_sample,
    write_refer_layout,
)
from samkit.referring.data.synthetic import COLOURS

SPLITS = ["train", "train", "val", "testA", "testB", "val"]


class _CreatesFile:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


class _RunsShell:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


@pytest.mark.parametrize("payload", [_CreatesFile, _RunsShell])
def test_pickle_that_would_run_code_is_refused(tmp_path, payload):
    victim = tmp_path / "created_by_pickle"
    evil = tmp_path / "refs(unc).p"
    evil.write_bytes(pickle.dumps([{"ref_id": 1, "x": payload(str(victim))}], protocol=2))
    with pytest.raises(InputError, match="not a plain-data pickle"):
        load_plain_pickle(evil)
    assert not victim.exists()


def test_plain_pickles_load(tmp_path):
    data = [
        {
            "ref_id": 1,
            "sentences": [{"raw": "the cat é"}],
            "ids": {1, 2},
            "f": frozenset([3]),
            "t": (1.5, None),
        }
    ]
    for protocol in (0, 2, 5):
        path = tmp_path / f"p{protocol}.p"
        path.write_bytes(pickle.dumps(data, protocol=protocol))
        assert load_plain_pickle(path) == data


def test_missing_annotation_files_are_named(tmp_path):
    with pytest.raises(InputError, match=r"missing its annotation file .*refcoco/refs\(unc\)\.p"):
        ReferIndex(tmp_path, "refcoco")
    (tmp_path / "refcoco").mkdir()
    (tmp_path / "refcoco" / "refs(unc).p").write_bytes(pickle.dumps([]))
    with pytest.raises(InputError, match=r"missing its annotation file .*refcoco/instances\.json"):
        ReferIndex(tmp_path, "refcoco")
    with pytest.raises(InputError, match="refcocog is split by umd or google, not 'unc'"):
        ReferIndex(tmp_path, "refcocog", "unc")
    with pytest.raises(InputError, match="unknown referring dataset"):
        ReferIndex(tmp_path, "refclef")


@pytest.fixture(scope="module")
def samples():
    return [synthetic_sample(i, size=40, seed=3) for i in range(len(SPLITS))]


def test_refcoco_layout_round_trip(tmp_path, samples):
    write_refer_layout(tmp_path, samples, SPLITS, dataset="refcoco")
    index = ReferIndex(tmp_path, "refcoco")
    assert index.splits == ["testA", "testB", "train", "val"]
    assert [e.ref_id for e in index.refs("test")] == [3, 4]  # "test" = every split containing "test"
    assert [e.ref_id for e in index.refs("testA")] == [3]
    with pytest.raises(InputError, match="no ref in split 'testC'"):
        index.refs("testC")
    val = ReferringDataset(tmp_path, "refcoco", split="val")
    assert len(val) == 2
    for item, original in zip((val[0], val[1]), (samples[2], samples[5])):
        assert np.array_equal(item.image, original.image)
        assert np.array_equal(item.mask, original.mask) and item.mask.sum() > 0
        assert item.sentences == original.sentences and item.ref_id == original.ref_id
        assert not item.no_target
    per_sentence = ReferringDataset(tmp_path, "refcoco", split="val", per_sentence=True)
    assert len(per_sentence) == len(samples[2].sentences) + len(samples[5].sentences)
    assert [per_sentence[i].sentences[0] for i in range(len(per_sentence))] == samples[2].sentences + samples[
        5
    ].sentences


def test_grefcoco_and_refzom_no_target(tmp_path):
    items = [synthetic_sample(i, size=32, seed=1, no_target_ratio=0.5) for i in range(8)]
    assert {s.no_target for s in items} == {True, False}
    splits = ["val"] * len(items)
    for dataset in ("grefcoco", "ref-zom"):
        write_refer_layout(tmp_path / dataset, items, splits, dataset=dataset)
        data = ReferringDataset(tmp_path / dataset, dataset, split="val")
        for k, original in enumerate(items):
            loaded = data[k]
            assert loaded.no_target == original.no_target
            assert np.array_equal(loaded.mask, original.mask)
            assert (loaded.mask.sum() == 0) == original.no_target
    grefs = json.loads((tmp_path / "grefcoco" / "grefcoco" / "grefs(unc).json").read_text())
    assert [r["ann_id"] == [-1] for r in grefs] == [s.no_target for s in items]


def _polygon_layout(tmp_path):
    image = np.zeros((12, 12, 3), np.uint8)
    write_refer_layout(tmp_path, [synthetic_sample(0, size=32)], ["val"])  # creates the folders and an image
    from PIL import Image

    Image.fromarray(image).save(tmp_path / "images" / "train2014" / "poly.png")
    first, second = [1, 1, 7, 1, 7, 7, 1, 7], [4, 4, 10, 4, 10, 10, 4, 10]  # two overlapping squares
    instances = {
        "images": [{"id": 1, "file_name": "poly.png", "height": 12, "width": 12}],
        "annotations": [
            {"id": 5, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": [first, second]}
        ],
        "categories": [{"id": 1, "name": "x"}],
    }
    (tmp_path / "refcoco" / "instances.json").write_text(json.dumps(instances))
    refs = [{"ref_id": 9, "ann_id": 5, "image_id": 1, "split": "val", "sentences": [{"raw": "two squares"}]}]
    (tmp_path / "refcoco" / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
    return first, second


def test_polygon_masks_and_official_overlap_quirk(tmp_path):
    from pycocotools import mask as mask_utils

    first, second = _polygon_layout(tmp_path)
    a, b = (mask_utils.decode(mask_utils.frPyObjects([p], 12, 12))[:, :, 0] for p in (first, second))
    assert (a & b).sum() > 0  # the polygons overlap
    fixed = ReferringDataset(tmp_path, "refcoco", split="val")[0].mask
    official = ReferringDataset(tmp_path, "refcoco", split="val", official_compat=True)[0].mask
    assert np.array_equal(fixed, a | b)
    assert np.array_equal(official, (a ^ b).astype(np.uint8))  # overlap lost, as LAVT / CARIS


def test_image_problems(tmp_path, samples):
    write_refer_layout(tmp_path, samples[:1], ["val"])
    image_file = next((tmp_path / "images" / "train2014").iterdir())
    from PIL import Image

    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(image_file)
    with pytest.raises(InputError, match="but its annotation says 40x40"):
        ReferringDataset(tmp_path, "refcoco", split="val")[0]
    image_file.unlink()
    with pytest.raises(InputError, match="cannot read image"):
        ReferringDataset(tmp_path, "refcoco", split="val")[0]


def test_train_and_test_transforms():
    sample = synthetic_sample(0, size=40, seed=3)
    sample.image[:] = (255, 0, 0)
    out = TrainTransform(size=20)(sample)
    assert out["image"].shape == (3, 20, 20) and out["image"].dtype == torch.float32
    expected = torch.tensor([(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (0 - 0.406) / 0.225])
    assert torch.allclose(out["image"][:, 5, 5], expected, atol=1e-5)
    assert out["mask"].shape == (20, 20) and out["mask"].dtype == torch.uint8
    # Nearest neighbour 40 -> 20 keeps pixel (2i + 1, 2j + 1) under PIL's centre-aligned rule.
    assert torch.equal(out["mask"], torch.from_numpy(sample.mask[1::2, 1::2]))
    assert out["sentence"] in sample.sentences
    many = synthetic_sample(0, size=40, seed=3)
    many.sentences = [f"s{i}" for i in range(20)]
    transform = TrainTransform(size=20, seed=5)
    chosen = [transform(many)["sentence"] for _ in range(2)]
    assert chosen[0] == chosen[1]  # deterministic within an epoch
    picks = set()
    for epoch in range(6):
        transform.set_epoch(epoch)
        picks.add(transform(many)["sentence"])
    assert len(picks) > 1  # changes across epochs
    test = TestTransform(size=24)(sample)
    assert test["image"].shape == (3, 24, 24)
    assert torch.equal(test["mask"], torch.from_numpy(sample.mask)) and test["original_size"] == (40, 40)
    assert test["sentences"] == sample.sentences


def test_synthetic_task_is_deterministic_and_unambiguous():
    data = SyntheticReferringDataset(60, size=48, seed=7)
    again = SyntheticReferringDataset(60, size=48, seed=7)
    assert np.array_equal(data[3].image, again[3].image) and data[3].sentences == again[3].sentences
    assert not np.array_equal(data[3].image, SyntheticReferringDataset(60, size=48, seed=8)[3].image)
    templates = set()
    for i in range(len(data)):
        s = data[i]
        colour, shape, slot = s.extra["colour"], s.extra["shape"], s.extra["slot"]
        assert s.sentences[0] == f"the {colour} {shape}"
        inside = s.image[s.mask.astype(bool)]
        assert (inside == COLOURS[colour]).all()  # the mask covers the named object only
        centre_x = np.nonzero(s.mask)[1].mean()
        assert {"left": 0, "middle": 1, "right": 2}[slot] == int(centre_x // 16)
        for sentence in s.sentences:
            templates.add(sentence.split(" ", 2)[-1] if "on the" in sentence else sentence.split()[-1])
    assert {"on the left", "on the right", "one"} <= templates
    with pytest.raises(InputError, match="at least 24 px"):
        synthetic_sample(0, size=16)
