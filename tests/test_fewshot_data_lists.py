"""Folds, official list rules and list files, dataset layouts."""

import numpy as np
import pytest

from samkit.errors import InputError
from samkit.fewshot.data import lists as L
from samkit.fewshot.data import pascal
from samkit.fewshot.data.coco import check_coco_root
from samkit.io.atomic import atomic_save_image


def test_folds():
    assert L.pascal_fold(0).novel == (1, 2, 3, 4, 5) and L.pascal_fold(3).novel == (16, 17, 18, 19, 20)
    assert L.pascal_fold(1).base == (1, 2, 3, 4, 5) + tuple(range(11, 21))
    coco = L.coco_fold(2)  # the official interleaved ("FWB") split
    assert coco.novel == tuple(range(3, 80, 4)) and len(coco.novel) == 20 and len(coco.base) == 60
    assert set(coco.novel) | set(coco.base) == set(range(1, 81))
    assert L.coco_fold(1, interleaved=False).novel == tuple(range(21, 41))
    assert L.pascal_fold(0).classes("train") == L.pascal_fold(0).base
    with pytest.raises(InputError, match="fold"):
        L.pascal_fold(4)
    with pytest.raises(InputError, match="dataset"):
        L.fold_split("ade", 0)


def _label(values):
    """A 64x64 label: ``values`` maps class -> pixel count, filled row-major after the background."""
    label = np.zeros(64 * 64, np.uint8)
    start = 0
    for value, count in values.items():
        label[start : start + count] = value
        start += count
    return label.reshape(64, 64)


def test_counted_classes_rules():
    big = L.MIN_CLASS_PIXELS
    label = _label({3: big, 7: big - 1, 255: 50})
    assert L.counted_classes(label, [3, 7], train=False) == [3]  # 7 is one pixel short
    assert L.counted_classes(label, [3, 7, 9], train=True) == [3]
    assert L.counted_classes(label, [3], train=True) == []  # holds a pixel of class 7 outside the fold
    assert L.counted_classes(label, [3], train=False) == [3]
    assert L.present_classes(label) == [3, 7]


def test_build_lists_on_hand_made_labels(tmp_path):
    big = L.MIN_CLASS_PIXELS
    labels = {
        "a": {1: big, 6: big},  # novel 1 + base 6
        "b": {6: big, 7: 10},  # base only (7 tiny but still base)
        "c": {2: 5, 8: big},  # a tiny novel pixel -> not a training image; not counted for class 2 in val
        "d": {2: big + 1},  # novel only
        "e": {255: 100},  # nothing
    }
    for name, values in labels.items():
        atomic_save_image(tmp_path / f"{name}.png", _label(values))
    pool = [(f"{n}.jpg", f"{n}.png") for n in labels]
    load = lambda p: L.read_label(tmp_path / p)
    split = L.pascal_fold(0)
    train = L.build_lists(pool, split.base, load, train=True)
    assert train.items == [("b.jpg", "b.png")]
    assert train.class_files[6] == [("b.jpg", "b.png")] and train.class_files[7] == []
    val = L.build_lists(pool, split.novel, load, train=False, prefix="../data/VOC")
    assert [p[0] for p in val.items] == ["../data/VOC/a.jpg", "../data/VOC/d.jpg"]
    assert val.class_files[1] == [("../data/VOC/a.jpg", "../data/VOC/a.png")]
    assert val.class_files[2] == [("../data/VOC/d.jpg", "../data/VOC/d.png")]
    assert list(val.class_files) == [1, 2, 3, 4, 5]
    assert (
        val.data_list_text() == "../data/VOC/a.jpg ../data/VOC/a.png\n../data/VOC/d.jpg ../data/VOC/d.png\n"
    )
    assert val.class_files_text().startswith("{1: [('../data/VOC/a.jpg', '../data/VOC/a.png')], 2: [(")
    val.save(tmp_path / "out", 0)
    again = L.read_lists(tmp_path / "out", 0)
    assert again == val
    assert again.relocated("../data/VOC", "").items == [("a.jpg", "a.png"), ("d.jpg", "d.png")]


def test_read_lists_never_evaluates_code(tmp_path):
    (tmp_path / "data_list_0.txt").write_text("a.jpg a.png\n")
    (tmp_path / "sub_class_file_list_0.txt").write_text("__import__('os').getcwd()")
    with pytest.raises(InputError, match="dict literal"):
        L.read_lists(tmp_path, 0)
    with pytest.raises(InputError, match="does not exist"):
        L.read_lists(tmp_path, 1)


def test_shipped_official_pascal_lists():
    sizes = {m: [len(pascal.official_pascal_lists(k, m).items) for k in range(4)] for m in ("train", "val")}
    assert sizes == {"train": [4208, 3726, 2752, 4510], "val": [364, 445, 592, 336]}
    val0 = pascal.official_pascal_lists(0, "val")
    assert [len(v) for v in val0.class_files.values()] == [81, 63, 89, 61, 71]
    pool = pascal.pascal_pool("val")
    assert len(pool) == 1449 and len(pascal.pascal_pool("train")) == 5953
    assert set(val0.items) <= set(pool)


def test_missing_folders_are_named(tmp_path):
    (tmp_path / "JPEGImages").mkdir()
    with pytest.raises(InputError, match="SegmentationClassAug"):
        pascal.check_pascal_root(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="lacks the folder JPEGImages"):  # the first missing one
        pascal.check_pascal_root(tmp_path / "empty")
    with pytest.raises(InputError, match="lacks val2014"):
        check_coco_root(tmp_path, "val")
    (tmp_path / "val2014").mkdir()
    (tmp_path / "annotations").mkdir()
    with pytest.raises(InputError, match="instances_val2014.json"):
        check_coco_root(tmp_path, "val", need_json=True)


def test_label_reader_rejects_rgb(tmp_path):
    atomic_save_image(tmp_path / "rgb.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(InputError, match="single-channel"):
        L.read_label(tmp_path / "rgb.png")


def test_coco_label_maps_from_instances_json(tmp_path):
    import json

    from samkit.fewshot.data.coco import make_label_maps

    cat_ids = [
        i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)
    ]  # the 80 COCO ids
    assert len(cat_ids) == 80
    square = lambda x0, y0, s: [[x0, y0, x0 + s, y0, x0 + s, y0 + s, x0, y0 + s]]
    doc = {
        "images": [
            {"id": 7, "file_name": "COCO_val2014_000000000007.jpg", "height": 80, "width": 80},
            {"id": 8, "file_name": "COCO_val2014_000000000008.jpg", "height": 80, "width": 80},
        ],
        "categories": [{"id": c, "name": str(c)} for c in cat_ids],
        "annotations": [  # category 13 is the 12th id -> class 12; 90 -> 80; the later one wins the overlap
            {
                "id": 1,
                "image_id": 7,
                "category_id": 13,
                "segmentation": square(0, 0, 60),
                "area": 3600,
                "bbox": [0, 0, 60, 60],
                "iscrowd": 0,
            },
            {
                "id": 2,
                "image_id": 7,
                "category_id": 90,
                "segmentation": square(40, 40, 30),
                "area": 900,
                "bbox": [40, 40, 30, 30],
                "iscrowd": 0,
            },
        ],
    }
    (tmp_path / "val2014").mkdir()
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_val2014.json").write_text(json.dumps(doc))
    pool = make_label_maps(tmp_path, "val", progress=False)
    assert pool == [
        ("val2014/COCO_val2014_000000000007.jpg", "annotations/val2014/COCO_val2014_000000000007.png")
    ]
    label = L.read_label(tmp_path / pool[0][1])
    assert label[10, 10] == 12 and label[50, 50] == 80 and label[75, 5] == 0
    assert L.present_classes(label) == [12, 80]
    split = L.coco_fold(3)  # novel 4, 8, ..., 80: both classes are novel
    lists = L.build_lists(pool, split.novel, lambda p: L.read_label(tmp_path / p), train=False)
    # class 12 keeps 60*60 - 20*20 = 3200 px >= 2048; class 80 has 30*30 = 900 px: not counted
    assert lists.items == pool and lists.class_files[12] == pool and lists.class_files[80] == []
