"""FSSAM on ``samkit.engine``: ``samkit train fewshot`` / ``samkit eval fewshot``.

``build_task(settings)`` turns the experiment's ``task:`` section into a Task (see
``samkit.engine.task``). Settings (defaults in brackets):

* data: ``dataset`` (``pascal`` | ``coco`` | ``synthetic``), ``root`` (the VOC2012 / COCO 2014
  folder, or where the synthetic set is generated), ``fold`` [0], ``shots`` [1], ``lists``
  [``official`` for PASCAL, else ``generate``; or a folder holding ``train/`` and ``val/`` list
  files in the official ``fss_list`` format], ``scale`` [the official RandScale range of the
  dataset], ``synthetic`` [{}: ``make_synthetic`` arguments];
* validation: ``val_episodes`` [1000], ``val_seed`` [321], ``val_loader_workers`` [32: the
  official test loader's worker count, which the episode draw depends on], ``prior_cache``
  [null: DINOv2 runs for every episode; ``memory`` or a folder: priors cached by episode key,
  see ``samkit.fewshot.priorcache``];
* model: ``backbone`` [``sam2-hiera-small``; ``sam2-hiera-base-plus``, ``sam2-hiera-large`` or
  ``tiny``], ``dino`` [``vitb14``, ``tiny`` with the tiny backbone], ``image_size`` [512, tiny
  128], ``dino_size`` [the builder's], ``official_compat`` [false], ``num_refine`` [3],
  ``checkpoint`` (a whole FSSAM model), ``backbone_checkpoint`` (SAM 2.0 weights),
  ``dino_checkpoint`` (``dinov2_vitb14_pretrain.pth``), ``model_seed`` [0].

Training follows the official recipe: Dice loss on the logits, only ``sam2.sam_mask_decoder``,
``sam2.memory_encoder`` and ``sam2.memory_attention`` trained (everything else, DINOv2, Hiera,
the prompt encoder, ``obj_ptr_proj``, ``mask_downsample`` and sam2's loose parameters, frozen).
Validation uses the fold's novel-class test episodes and the official metrics.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from samkit.errors import InputError
from samkit.fewshot.build import IMAGE_SIZE, TINY, TINY_BACKBONE, TINY_IMAGE_SIZE
from samkit.fewshot.data.episodes import TEST_EPISODES, TEST_SEED, EpisodeDataset, official_test_episodes
from samkit.fewshot.data.lists import (
    FewShotLists,
    FoldSplit,
    fold_split,
    present_classes,
    read_label,
    read_lists,
)
from samkit.fewshot.data.transforms import COCO_SCALE, PASCAL_SCALE, eval_transform, train_transform
from samkit.fewshot.loss import dice_loss
from samkit.fewshot.model import TRAINED_MODULES
from samkit.fewshot.priorcache import PriorCache, episode_key, weights_fingerprint
from samkit.metrics.fewshot import FewShotIoU

DATASETS = ("pascal", "coco", "synthetic")
OFFICIAL_LOADER_WORKERS = 32
TRAINABLE = tuple(f"sam2.{name}" for name in TRAINED_MODULES)
"""The modules FSSAM trains (the official optimizer's three parameter groups)."""
LIST_OFFICIAL, LIST_GENERATE = "official", "generate"
PER_EPISODE = ("raw_label", "episode")
"""Batch entries kept as lists by ``collate`` (original label sizes differ between episodes)."""

DEFAULTS: dict[str, Any] = {
    "dataset": None, "root": None, "fold": 0, "shots": 1, "lists": None, "scale": None, "synthetic": {},
    "val_episodes": TEST_EPISODES, "val_seed": TEST_SEED, "val_loader_workers": OFFICIAL_LOADER_WORKERS,
    "prior_cache": None,
    "backbone": "sam2-hiera-small", "dino": None, "image_size": None, "dino_size": None,
    "official_compat": False, "num_refine": 3, "checkpoint": None, "backbone_checkpoint": None,
    "dino_checkpoint": None, "model_seed": 0,
}


def resolve_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The task settings with every default filled in; unknown or invalid ones raise InputError."""
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise InputError(f"unknown fewshot task settings {unknown}; known: {sorted(DEFAULTS)}")
    s = {**DEFAULTS, **settings}
    if s["dataset"] not in DATASETS:
        raise InputError(f"task.dataset must be one of {', '.join(DATASETS)}, got {s['dataset']!r}")
    if not s["root"]:
        raise InputError(f"task.root is required: the {s['dataset']} data folder")
    for name, minimum in (("shots", 1), ("val_episodes", 1), ("num_refine", 0), ("fold", 0),
                          ("val_loader_workers", 0)):
        if isinstance(s[name], bool) or not isinstance(s[name], int) or s[name] < minimum:
            raise InputError(f"task.{name} must be an integer >= {minimum}, got {s[name]!r}")
    if not isinstance(s["synthetic"], Mapping):
        raise InputError(f"task.synthetic must be a mapping of make_synthetic arguments, got {s['synthetic']!r}")
    tiny = s["backbone"] in (TINY, TINY_BACKBONE)
    if s["dino"] is None:
        s["dino"] = TINY if tiny else "vitb14"
    if s["image_size"] is None:
        s["image_size"] = TINY_IMAGE_SIZE if tiny else IMAGE_SIZE
    if s["lists"] is None:
        s["lists"] = LIST_OFFICIAL if s["dataset"] == "pascal" else LIST_GENERATE
    if s["scale"] is None:
        s["scale"] = COCO_SCALE if s["dataset"] == "coco" else PASCAL_SCALE
    if len(s["scale"]) != 2 or not 0 < s["scale"][0] <= s["scale"][1]:
        raise InputError(f"task.scale must be [low, high] with 0 < low <= high, got {s['scale']!r}")
    return s


def collate(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack episodes into a batch; ``raw_label`` and ``episode`` stay per-episode lists."""
    batch: dict[str, Any] = {}
    for name in samples[0]:
        values = [sample[name] for sample in samples]
        if name in PER_EPISODE:
            batch[name] = values
        elif isinstance(values[0], torch.Tensor):
            batch[name] = torch.stack(values)
        else:
            batch[name] = torch.tensor(values)
    return batch


class EngineSeededEpisodes:
    """Training episodes whose random draws follow the engine's per-sample seeding.

    The engine seeds Python's ``random`` from (seed, epoch, index) before loading a sample; the
    token drawn here selects the episode's class, supports and augmentations, so an item differs
    between epochs, and is the same on any rank, worker count or resumption.
    """

    def __init__(self, episodes: EpisodeDataset) -> None:
        self.episodes = episodes

    def __len__(self) -> int:
        return len(self.episodes)

    def __getitem__(self, index: int) -> dict[str, Any]:
        self.episodes.set_epoch(random.getrandbits(63))
        return self.episodes[index]


class KeyedEpisodes:
    """Fixed (validation) episodes, each item carrying its JSON description for the prior cache key."""

    def __init__(self, episodes: EpisodeDataset, descriptions: Sequence[str]) -> None:
        self.episodes, self.descriptions = episodes, list(descriptions)

    def __len__(self) -> int:
        return len(self.episodes)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.episodes[index], "episode": self.descriptions[index]}


class FewShotTask:
    """The engine Task of FSSAM (see the module docstring for the settings)."""

    collate = staticmethod(collate)
    frozen_in_eval_mode = True

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = resolve_settings(settings)
        self.root = Path(self.settings["root"])
        self._synthetic: Any = None
        self.cache = PriorCache(self.settings["prior_cache"]) if self.settings["prior_cache"] else None

    # ---- data ---------------------------------------------------------------------------------
    def _synthetic_set(self) -> Any:
        if self._synthetic is None:
            from samkit.fewshot.data.synthetic import make_synthetic

            self._synthetic = make_synthetic(self.root, **self.settings["synthetic"])
        return self._synthetic

    def split(self) -> FoldSplit:
        """The fold's base (trained) and novel (validated) classes."""
        s = self.settings
        if s["dataset"] == "synthetic":
            return self._synthetic_set().fold(s["fold"])
        return fold_split(s["dataset"], s["fold"])

    def lists(self, mode: str) -> FewShotLists:
        """The fold's ``train`` or ``val`` lists (shipped, generated from the labels, or read from a folder)."""
        s = self.settings
        dataset, fold, source = s["dataset"], s["fold"], s["lists"]
        if dataset == "synthetic":
            if source != LIST_GENERATE:
                raise InputError(f"the synthetic dataset generates its lists; task.lists must be {LIST_GENERATE!r}")
            return self._synthetic_set().lists(fold, mode)
        from samkit.fewshot.data import coco, pascal

        module = pascal if dataset == "pascal" else coco
        if dataset == "pascal":
            pascal.check_pascal_root(self.root)
        if source == LIST_OFFICIAL:
            if dataset != "pascal":
                raise InputError("samkit ships the official lists for PASCAL-5i only; use lists: generate or a folder")
            return pascal.official_pascal_lists(fold, mode)
        if source == LIST_GENERATE:
            build = pascal.build_pascal_lists if dataset == "pascal" else coco.build_coco_lists
            return build(self.root, fold, mode)
        lists = read_lists(Path(source) / mode, fold)
        prefix = module.OFFICIAL_PREFIX
        if lists.items and lists.items[0][0].startswith(prefix):
            lists = lists.relocated(prefix, "")
        return lists

    def train_dataset(self) -> EngineSeededEpisodes:
        s = self.settings
        transform = train_transform(tuple(s["scale"]), s["image_size"])
        return EngineSeededEpisodes(EpisodeDataset(self.root, self.lists("train"), self.split(), s["shots"],
                                                   transform=transform))

    def val_dataset(self) -> KeyedEpisodes:
        s = self.settings
        lists, split = self.lists("val"), self.split()
        episodes = official_test_episodes(
            lists, split, s["shots"], lambda pair: present_classes(read_label(self.root / pair[1])),
            num_episodes=s["val_episodes"], seed=s["val_seed"], workers=s["val_loader_workers"],
        )
        root = str(self.root.resolve())
        descriptions = [json.dumps({"dataset": s["dataset"], "root": root, "query": list(e.query),
                                    "class": e.class_id, "supports": [list(p) for p in e.supports],
                                    "image_size": s["image_size"]}, sort_keys=True) for e in episodes]
        dataset = EpisodeDataset(self.root, lists, split, s["shots"], episodes=episodes,
                                 transform=eval_transform(s["image_size"]))
        return KeyedEpisodes(dataset, descriptions)

    # ---- model --------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        from samkit.fewshot.build import build_fssam

        s = self.settings
        model = build_fssam(
            s["backbone"], dino=s["dino"], image_size=s["image_size"], dino_size=s["dino_size"],
            checkpoint=s["checkpoint"], sam2_checkpoint=s["backbone_checkpoint"],
            dino_checkpoint=s["dino_checkpoint"], official_compat=bool(s["official_compat"]),
            seed=s["model_seed"],
        )
        model.num_refine = s["num_refine"]
        # sam2's loose parameters (maskmem_tpos_enc, no_obj_ptr, ...) are outside the official optimizer
        for parameter in model.sam2.parameters(recurse=False):
            parameter.requires_grad_(False)
        return model

    def trainable_modules(self, model: nn.Module) -> tuple[str, ...]:
        return TRAINABLE

    def load_weights(self, model: nn.Module, path: Path) -> None:
        """A samkit training checkpoint (best.pt / last.pt) or an official FSSAM file, strictly."""
        from samkit.fewshot.build import load_fssam_checkpoint

        load_fssam_checkpoint(model, path, backbone=self.settings["backbone"])

    # ---- steps --------------------------------------------------------------------------------
    def training_step(self, model: nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
        logits = model(batch["query"], batch["support_images"], batch["support_masks"])
        return dice_loss(logits, batch["query_label"])

    def _priors_key(self, model: nn.Module, description: str) -> str:
        fingerprint = f"{weights_fingerprint(model.dino)}:{model.dino_size}"
        return episode_key(json.loads(description), fingerprint)

    def predict(self, model: nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
        """Logits (B, S, S) of a validation batch, with DINOv2 priors from the cache when it is on."""
        query, images, masks = batch["query"], batch["support_images"], batch["support_masks"]
        if self.cache is None:
            return model(query, images, masks)
        keys = [self._priors_key(model, description) for description in batch["episode"]]
        cached = [self.cache.get(key) for key in keys]
        if all(priors is not None for priors in cached):
            return model(query, images, masks, priors=torch.stack(cached).to(query.device))
        support = model.encode_support(images, masks)
        features = model.encode_query(query)
        priors = model.priors(features, support)  # (B, K, 2, S, S)
        for key, episode_priors in zip(keys, priors):
            self.cache.put(key, episode_priors)
        return model.segment(features, support, priors)

    def eval_step(self, model: nn.Module, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        logits = self.predict(model, batch)
        meter = FewShotIoU(len(self.split().novel))
        for index, raw_label in enumerate(batch["raw_label"]):
            meter.update(logits[index], raw_label, int(batch["class_index"][index]))
        return {"iou_state": meter.state, "episodes": torch.tensor(len(batch["raw_label"]))}

    def compute_metrics(self, totals: Mapping[str, torch.Tensor]) -> dict[str, float]:
        novel = self.split().novel
        meter = FewShotIoU(len(novel))
        meter.merge(totals["iou_state"])
        scores = meter.compute()
        metrics = {"miou": scores.miou, "fbiou": scores.fbiou, "piou": scores.piou,
                   "episodes": float(totals["episodes"])}
        metrics.update({f"iou_class_{class_id}": iou for class_id, iou in zip(novel, scores.class_iou)})
        return metrics


def build_task(settings: Mapping[str, Any]) -> FewShotTask:
    """Task factory for ``samkit train fewshot`` / ``samkit eval fewshot``."""
    return FewShotTask(settings)
