"""Few-shot data: PASCAL-5i / COCO-20i lists and folds, episodes, augmentations, a synthetic set.

Modules: ``lists`` (folds, list rules, list files), ``pascal``, ``coco`` (standard layouts),
``episodes`` (seeded test episodes, episode dataset), ``transforms`` (official augmentations),
``synthetic`` (generated textured-shape dataset for tests and the learning test).
"""

from samkit.fewshot.data.episodes import (
    TEST_EPISODES,
    TEST_SEED,
    Episode,
    EpisodeDataset,
    episodes_for_seeds,
    official_test_episodes,
)
from samkit.fewshot.data.lists import (
    MIN_CLASS_PIXELS,
    FewShotLists,
    FoldSplit,
    build_lists,
    coco_fold,
    fold_split,
    pascal_fold,
    present_classes,
    read_label,
    read_lists,
)
from samkit.fewshot.data.transforms import eval_transform, train_transform

__all__ = [
    "MIN_CLASS_PIXELS",
    "TEST_EPISODES",
    "TEST_SEED",
    "Episode",
    "EpisodeDataset",
    "FewShotLists",
    "FoldSplit",
    "build_lists",
    "coco_fold",
    "episodes_for_seeds",
    "eval_transform",
    "fold_split",
    "official_test_episodes",
    "pascal_fold",
    "present_classes",
    "read_label",
    "read_lists",
    "train_transform",
]
