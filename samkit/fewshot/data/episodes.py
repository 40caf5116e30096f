"""Episodes: the seeded test-episode sampler and the episode dataset (query + K supports).

The official test draws episodes inside a ``DataLoader`` (batch 1, ``shuffle=False``, 32 workers)
that is re-iterated until 1,000 episodes are taken. Every iteration draws a base seed from torch's
CPU generator (seeded with 321), worker ``w`` seeds Python's ``random`` with ``base + w``, and
query ``i`` goes to worker ``i % 32``. Per query the worker draws, with ``random.randint``:

1. the target class uniformly among the novel classes present in the query label (any pixel count);
2. per shot a support index into that class's file list, redrawn while it is the query itself or an
   index drawn before (the first draw is always redrawn: the official loop starts from the query).

``official_test_episodes`` replays exactly this, so the same lists and seed give the official
episodes. The official stacks the K supports in reverse draw order (``s_x = cat([s_k, s_x])``);
``Episode.supports`` holds them in that stacked order.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from samkit.errors import InputError
from samkit.fewshot.data.lists import IGNORE_LABEL, FewShotLists, FoldSplit, Pair, present_classes, read_label
from samkit.fewshot.data.transforms import Compose, eval_transform

TEST_EPISODES = 1000
TEST_SEED = 321
OFFICIAL_WORKERS = 32


@dataclass(frozen=True)
class Episode:
    """One episode: a query pair, its target class, and the support pairs (official stacked order)."""

    query: Pair
    class_id: int  # dataset class id (PASCAL 1..20, COCO 1..80)
    class_index: int  # index of class_id in the fold's class list (the official ``subcls``)
    supports: tuple[Pair, ...]


def draw_episode(
    rng: random.Random,
    query: Pair,
    classes_in_query: Sequence[int],
    class_files: dict[int, list[Pair]],
    shots: int,
) -> tuple[int, tuple[Pair, ...]]:
    """Draw the class and ``shots`` supports (draw order) with the official sequence of ``randint`` calls."""
    if not classes_in_query:
        raise InputError(f"query {query[0]} holds none of the fold's classes")
    class_id = classes_in_query[rng.randint(1, len(classes_in_query)) - 1]
    files = class_files.get(class_id, [])
    usable = sum(1 for f in files if f != query)
    if usable < shots:
        raise InputError(f"class {class_id} has {usable} support images besides the query, {shots} needed")
    chosen: list[int] = []
    for _ in range(shots):
        index = rng.randint(1, len(files)) - 1  # drawn and discarded, as the official loop does
        candidate = query
        while candidate == query or index in chosen:
            index = rng.randint(1, len(files)) - 1
            candidate = files[index]
        chosen.append(index)
    return class_id, tuple(files[i] for i in chosen)


def _worker_base_seeds(seed: int) -> Callable[[], int]:
    """Successive ``DataLoader`` base seeds after ``torch.manual_seed(seed)``."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    return lambda: int(torch.empty((), dtype=torch.int64).random_(generator=generator).item())


def official_test_episodes(
    lists: FewShotLists,
    split: FoldSplit,
    shots: int,
    query_classes: Callable[[Pair], Sequence[int]],
    num_episodes: int = TEST_EPISODES,
    seed: int = TEST_SEED,
    workers: int = OFFICIAL_WORKERS,
) -> list[Episode]:
    """The episodes the official test loader draws from ``lists`` (val mode) with ``seed``.

    ``query_classes(pair)`` gives the classes present in a query label (``present_classes`` of it);
    it is called once per distinct query. ``workers=0`` replays a loader without worker processes
    (one ``random.Random(seed)`` stream).
    """
    if shots < 1:
        raise InputError(f"shots must be >= 1, got {shots}")
    if num_episodes < 1:
        raise InputError(f"num_episodes must be >= 1, got {num_episodes}")
    if not lists.items:
        raise InputError("the episode list is empty")
    novel = split.novel
    cache: dict[Pair, list[int]] = {}
    next_base = _worker_base_seeds(seed)
    main_rng = random.Random(seed)
    episodes: list[Episode] = []
    while len(episodes) < num_episodes:
        base = next_base()
        rngs = [random.Random(base + w) for w in range(workers)] if workers > 0 else [main_rng]
        for position, query in enumerate(lists.items):
            if len(episodes) == num_episodes:
                break
            if query not in cache:
                cache[query] = [c for c in query_classes(query) if c in novel]
            class_id, drawn = draw_episode(
                rngs[position % len(rngs)], query, cache[query], lists.class_files, shots
            )
            episodes.append(Episode(query, class_id, novel.index(class_id), tuple(reversed(drawn))))
    return episodes


def episodes_for_seeds(
    lists: FewShotLists,
    split: FoldSplit,
    shots: int,
    query_classes: Callable[[Pair], Sequence[int]],
    seeds: Sequence[int] = (TEST_SEED,),
    num_episodes: int = TEST_EPISODES,
    workers: int = OFFICIAL_WORKERS,
) -> dict[int, list[Episode]]:
    """Test episodes for several seeds (the official test uses one, 321); labels read once."""
    cache: dict[Pair, list[int]] = {}

    def cached(pair: Pair) -> list[int]:
        if pair not in cache:
            cache[pair] = list(query_classes(pair))
        return cache[pair]

    return {s: official_test_episodes(lists, split, shots, cached, num_episodes, s, workers) for s in seeds}


def binary_label(label: np.ndarray, class_id: int) -> np.ndarray:
    """Class ``class_id`` -> 1, every other class -> 0, ignore (255) kept."""
    out = (label == class_id).astype(np.uint8)
    out[label == IGNORE_LABEL] = IGNORE_LABEL
    return out


def read_image(path: str | Path) -> np.ndarray:
    """An RGB image as float32 HxWx3 in 0-255."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise InputError(f"image file {path} does not exist")
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float32)


class EpisodeDataset:
    """A map-style dataset of episodes (``torch.utils.data.Dataset`` compatible).

    ``episodes`` given (test / validation): item ``i`` is that fixed episode, resized by
    ``transform`` (default: the official 512 resize) and with ``raw_label``, the binary label at the
    original size, for evaluation. ``episodes`` None (training): item ``i`` queries
    ``lists.items[i]`` with a class and supports drawn from ``random.Random`` seeded by
    ``(seed, epoch, i)``, so an item is the same whatever the worker or rank; call ``set_epoch``.

    Items are dicts: ``query`` (3,H,W) float 0-255, ``query_label`` (H,W) int64 0/1/255,
    ``support_images`` (K,3,H,W), ``support_masks`` (K,H,W), ``class_index``, ``class_id`` and,
    for fixed episodes, ``raw_label`` (H0,W0) int64.
    """

    def __init__(
        self,
        root: str | Path,
        lists: FewShotLists,
        split: FoldSplit,
        shots: int,
        episodes: Sequence[Episode] | None = None,
        transform: Compose | None = None,
        seed: int = TEST_SEED,
    ) -> None:
        if shots < 1:
            raise InputError(f"shots must be >= 1, got {shots}")
        self.root = Path(root)
        self.lists = lists
        self.split = split
        self.shots = shots
        self.episodes = list(episodes) if episodes is not None else None
        self.transform = transform if transform is not None else eval_transform()
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Training only: select the epoch whose random draws items use."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.episodes) if self.episodes is not None else len(self.lists.items)

    def _rng(self, index: int) -> random.Random:
        return random.Random(f"fewshot-episode:{self.seed}:{self.epoch}:{index}")

    def episode(self, index: int) -> Episode:
        """The episode of item ``index`` (drawn for the current epoch in training)."""
        return self._draw(index)[0]

    def _draw(self, index: int) -> tuple[Episode, random.Random | None]:
        """The episode and, in training, the RNG that then draws the augmentations (official order)."""
        if self.episodes is not None:
            return self.episodes[index], None
        rng = self._rng(index)
        query = self.lists.items[index]
        base = self.split.base
        classes = [c for c in present_classes(read_label(self.root / query[1])) if c in base]
        class_id, drawn = draw_episode(rng, query, classes, self.lists.class_files, self.shots)
        return Episode(query, class_id, base.index(class_id), tuple(reversed(drawn))), rng

    def __getitem__(self, index: int) -> dict[str, object]:
        import torch

        if not 0 <= index < len(self):
            raise IndexError(index)
        episode, rng = self._draw(index)

        def load(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
            image = read_image(self.root / pair[0])
            label = binary_label(read_label(self.root / pair[1]), episode.class_id)
            if image.shape[:2] != label.shape:
                raise InputError(f"image {pair[0]} is {image.shape[:2]} but its label is {label.shape}")
            return image, label

        query_image, query_label = load(episode.query)
        raw_label = query_label.copy()
        query_image, query_label = self.transform(query_image, query_label, rng)
        support_images, support_masks = [], []
        for pair in reversed(episode.supports):  # transformed in draw order, stacked in official order
            image, mask = self.transform(*load(pair), rng)
            support_images.insert(0, torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))))
            support_masks.insert(0, torch.from_numpy(mask.astype(np.int64)))
        item: dict[str, object] = {
            "query": torch.from_numpy(np.ascontiguousarray(query_image.transpose(2, 0, 1))),
            "query_label": torch.from_numpy(query_label.astype(np.int64)),
            "support_images": torch.stack(support_images),
            "support_masks": torch.stack(support_masks),
            "class_index": episode.class_index,
            "class_id": episode.class_id,
        }
        if self.episodes is not None:
            item["raw_label"] = torch.from_numpy(raw_label.astype(np.int64))
        return item
