"""Episode sampler (against a real multi-worker DataLoader), episode dataset and the synthetic set."""

import random

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from samkit.errors import InputError
from samkit.fewshot.data import episodes as E
from samkit.fewshot.data.lists import FewShotLists, FoldSplit, present_classes, read_label
from samkit.fewshot.data.synthetic import make_synthetic

SPLIT = FoldSplit("toy", 0, novel=(1, 2), base=(3,))
QUERY_CLASSES = {f"q{i}": ([1] if i % 3 else [1, 2]) for i in range(7)}
ITEMS = [(q, q + ".png") for q in QUERY_CLASSES]
CLASS_FILES = {1: ITEMS[:], 2: [p for p in ITEMS if 2 in QUERY_CLASSES[p[0]]]}
LISTS = FewShotLists(ITEMS, CLASS_FILES)


class OfficialStyleEpisodes(Dataset):
    """Draws as the official ``SemData.__getitem__`` does: Python's global ``random`` inside the worker."""

    def __init__(self, shots):
        self.shots = shots

    def __len__(self):
        return len(ITEMS)

    def __getitem__(self, index):
        query = ITEMS[index]
        classes = QUERY_CLASSES[query[0]]
        chosen_class = classes[random.randint(1, len(classes)) - 1]
        files = CLASS_FILES[chosen_class]
        picked, paths = [], []
        for _ in range(self.shots):
            idx = random.randint(1, len(files)) - 1
            path = query
            while path == query or idx in picked:
                idx = random.randint(1, len(files)) - 1
                path = files[idx]
            picked.append(idx)
            paths.append(path[0])
        return chosen_class, "|".join(reversed(paths))  # the official stacks supports in reverse


def _official_loader_episodes(shots, workers, episodes, seed):
    loader = DataLoader(OfficialStyleEpisodes(shots), batch_size=1, shuffle=False, num_workers=workers)
    torch.manual_seed(seed)
    random.seed(seed)
    out = []
    while len(out) < episodes:  # re-iterated like test.py until enough episodes
        for chosen_class, supports in loader:
            if len(out) == episodes:
                break
            out.append((int(chosen_class), supports[0]))
    return out


@pytest.mark.parametrize("shots,workers", [(1, 2), (2, 0), (2, 2)])
def test_replays_a_real_dataloader(shots, workers):
    expected = _official_loader_episodes(shots, workers, episodes=17, seed=321)
    ours = E.official_test_episodes(
        LISTS, SPLIT, shots, lambda p: QUERY_CLASSES[p[0]], num_episodes=17, seed=321, workers=workers
    )
    assert [(e.class_id, "|".join(s[0] for s in e.supports)) for e in ours] == expected
    assert [e.query for e in ours] == (ITEMS * 3)[:17]
    assert all(e.class_index == SPLIT.novel.index(e.class_id) for e in ours)


def test_episode_invariants_and_seeds():
    many = E.episodes_for_seeds(
        LISTS, SPLIT, 2, lambda p: QUERY_CLASSES[p[0]], seeds=(321, 5), num_episodes=40
    )
    for episodes in many.values():
        for e in episodes:
            assert e.query not in e.supports and len(set(e.supports)) == 2
            assert set(e.supports) <= set(CLASS_FILES[e.class_id])
    assert many[321] != many[5]
    again = E.official_test_episodes(LISTS, SPLIT, 2, lambda p: QUERY_CLASSES[p[0]], num_episodes=40)
    assert again == many[321]


def test_draw_episode_errors():
    with pytest.raises(InputError, match="support images besides the query"):
        E.draw_episode(random.Random(0), ITEMS[0], [2], CLASS_FILES, shots=3)  # class 2 has 2 other images
    with pytest.raises(InputError, match="none of the fold"):
        E.draw_episode(random.Random(0), ITEMS[0], [], CLASS_FILES, shots=1)
    with pytest.raises(InputError, match="shots"):
        E.official_test_episodes(LISTS, SPLIT, 0, lambda p: [1])


def test_binary_label_keeps_ignore():
    label = np.array([[0, 3, 5], [255, 3, 1]], np.uint8)
    assert E.binary_label(label, 3).tolist() == [[0, 1, 0], [255, 1, 0]]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return make_synthetic(
        tmp_path_factory.mktemp("syn"), num_classes=4, num_folds=2, images_per_class=4, size=128
    )


def test_synthetic_is_deterministic_and_holds_out_novel_classes(synthetic, tmp_path):
    other = make_synthetic(tmp_path, num_classes=4, num_folds=2, images_per_class=4, size=128)
    for rel in (synthetic.pools["val"][3][0], synthetic.pools["train"][5][1]):
        assert (synthetic.root / rel).read_bytes() == (other.root / rel).read_bytes()
    split = synthetic.fold(0)
    assert split.novel == (1, 2) and split.base == (3, 4)
    train = synthetic.lists(0, "train")
    assert train.items
    for _, label_path in train.items:  # no novel pixel anywhere in a training image
        assert not set(present_classes(read_label(synthetic.root / label_path))) & set(split.novel)
    val = synthetic.lists(0, "val")
    assert all(len(val.class_files[c]) >= 2 for c in split.novel)
    label = read_label(synthetic.root / val.items[0][1])
    assert 255 in label and label.dtype == np.uint8


def test_episode_dataset_items(synthetic):
    split, val = synthetic.fold(1), synthetic.lists(1, "val")
    episodes = E.official_test_episodes(
        val, split, 2, lambda p: present_classes(read_label(synthetic.root / p[1])), num_episodes=5
    )
    data = E.EpisodeDataset(synthetic.root, val, split, 2, episodes, transform=E.eval_transform(32))
    item = data[0]
    assert item["query"].shape == (3, 32, 32) and item["query"].dtype == torch.float32
    assert item["support_images"].shape == (2, 3, 32, 32) and item["support_masks"].shape == (2, 32, 32)
    assert item["raw_label"].shape == (128, 128) and item["class_id"] == episodes[0].class_id
    raw = read_label(synthetic.root / episodes[0].query[1])
    assert torch.equal(
        item["raw_label"], torch.from_numpy(E.binary_label(raw, item["class_id"]).astype(np.int64))
    )
    assert set(item["support_masks"].unique().tolist()) <= {0, 1, 255} and (item["support_masks"] == 1).any()
    with pytest.raises(IndexError):
        data[5]


def test_training_items_depend_on_seed_epoch_index_only(synthetic):
    from samkit.fewshot.data.transforms import train_transform

    split, train = synthetic.fold(0), synthetic.lists(0, "train")
    data = E.EpisodeDataset(synthetic.root, train, split, 1, transform=train_transform(size=48), seed=7)
    a, b = data[1], data[1]
    assert torch.equal(a["query"], b["query"]) and torch.equal(a["support_masks"], b["support_masks"])
    assert a["class_id"] in split.base and "raw_label" not in a and a["query"].shape == (3, 48, 48)
    data.set_epoch(1)
    assert not torch.equal(data[1]["query"], a["query"])
