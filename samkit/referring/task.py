"""ReferSAM on ``samkit.engine``: ``samkit train referring`` / ``samkit eval referring``.

The experiment's ``task:`` section has four sub-sections (every key optional; unknown keys are errors):

* ``model``: ``backbone`` (sam-vit-b / sam-vit-l / sam-vit-h / tiny-sam), ``backbone_checkpoint``
  (a SAM ``.pth``: the untrained start point), ``checkpoint`` (a ReferSAM state_dict to start from,
  official layout or a samkit ``best.pt``), ``text_encoder`` (hub id, local directory, or ``minilm``
  for the packaged all-MiniLM-L6-v2), ``text_pretrained`` (false: random text weights from the text
  model's config, changed by ``text_overrides``; the tokenizer still comes from ``text_encoder``),
  ``text_max_length`` (20), ``image_size`` (448, a multiple of 32), ``official_compat``,
  ``activation_checkpointing`` and ``frozen`` (extra module names to freeze).
* ``data``: ``dataset`` (refcoco, refcoco+, refcocog, grefcoco, ref-zom or synthetic), ``root``,
  ``split_by``, ``image_dir``, ``train_split``, ``val_split``; for ``synthetic``: ``train_samples``,
  ``val_samples``, ``synthetic_size`` (generated image px; default ``image_size``), ``seed``,
  ``no_target_ratio``.
* ``loss``: ``num_points``, ``oversample_ratio``, ``importance_sample_ratio``, ``weights``
  ({mask, dice, mask_aux, dice_aux}) of :class:`samkit.referring.loss.ReferringLoss`.
* ``eval``: ``space`` (``original``: logits resized to the image's original size, the default;
  ``resized``: the CARIS / LAVT network-input space).

Training items are one referent with one of its sentences, drawn from the global RNG that the
engine seeds per sample from (seed, epoch, index), so the choice changes every epoch and survives a
resumption. Real-dataset evaluation items are one expression each (at the original resolution);
generated evaluation items use sentence ``index mod count``. The text encoder follows the
official code: a CLIP text model is frozen (and kept in eval mode), any BERT-like one is trained.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from samkit.errors import InputError
from samkit.metrics.referring import SPACES, ReferringMetrics, eval_masks
from samkit.referring.data import ReferringDataset, SyntheticReferringDataset
from samkit.referring.data.refer import SPLIT_BY
from samkit.referring.data.transforms import resize_mask, resize_normalize
from samkit.referring.loss import (
    IMPORTANCE_SAMPLE_RATIO,
    LOSS_KEYS,
    NUM_POINTS,
    OVERSAMPLE_RATIO,
    LossWeights,
)

SYNTHETIC = "synthetic"
INPUT_MULTIPLE = 32
STATE_KEY = "referring"
MODEL_DEFAULTS: dict[str, Any] = {
    "backbone": "sam-vit-b", "backbone_checkpoint": None, "checkpoint": None,
    "text_encoder": "bert-base-uncased", "text_pretrained": True, "text_overrides": {}, "text_max_length": 20,
    "image_size": 448, "official_compat": False, "activation_checkpointing": False, "frozen": [],
}
DATA_DEFAULTS: dict[str, Any] = {
    "dataset": "refcoco", "root": None, "split_by": None, "image_dir": None, "train_split": "train",
    "val_split": "val", "train_samples": 256, "val_samples": 64, "synthetic_size": None, "seed": 0,
    "no_target_ratio": 0.0,
}
LOSS_DEFAULTS: dict[str, Any] = {
    "num_points": NUM_POINTS, "oversample_ratio": OVERSAMPLE_RATIO,
    "importance_sample_ratio": IMPORTANCE_SAMPLE_RATIO, "weights": {},
}
EVAL_DEFAULTS: dict[str, Any] = {"space": "original"}
SECTIONS = {"model": MODEL_DEFAULTS, "data": DATA_DEFAULTS, "loss": LOSS_DEFAULTS, "eval": EVAL_DEFAULTS}
VAL_SEED_OFFSET = 1
"""The generated validation set uses ``data.seed + 1``: held-out images, never seen in training."""


def _section(settings: Mapping[str, Any], name: str) -> dict[str, Any]:
    values = settings.get(name) or {}
    if not isinstance(values, Mapping):
        raise InputError(f"task.{name} must be a mapping, got {type(values).__name__}")
    defaults = SECTIONS[name]
    unknown = sorted(str(key) for key in values if key not in defaults)
    if unknown:
        raise InputError(f"unknown task.{name} settings {unknown}; known: {sorted(defaults)}")
    return {**defaults, **values}


def parse_settings(settings: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The four validated sections (defaults filled in); bad values raise InputError naming the key."""
    unknown = sorted(str(key) for key in settings if key not in SECTIONS)
    if unknown:
        raise InputError(f"unknown referring task sections {unknown}; expected {sorted(SECTIONS)}")
    parsed = {name: _section(settings, name) for name in SECTIONS}
    from samkit.referring.config import BACKBONE_TO_SAM_TYPE

    model, data = parsed["model"], parsed["data"]
    if model["backbone"] not in BACKBONE_TO_SAM_TYPE:
        raise InputError(f"task.model.backbone {model['backbone']!r} is not one of {sorted(BACKBONE_TO_SAM_TYPE)}")
    size = model["image_size"]
    if isinstance(size, bool) or not isinstance(size, int) or size < INPUT_MULTIPLE or size % INPUT_MULTIPLE:
        raise InputError(f"task.model.image_size must be a positive multiple of {INPUT_MULTIPLE}, got {size!r}")
    if not isinstance(model["frozen"], list) or not isinstance(model["text_overrides"], Mapping):
        raise InputError("task.model.frozen must be a list of module names and text_overrides a mapping")
    if model["text_overrides"] and model["text_pretrained"]:
        raise InputError("task.model.text_overrides changes a randomly initialised text model: "
                         "it needs text_pretrained: false")
    if data["dataset"] != SYNTHETIC and data["dataset"] not in SPLIT_BY:
        raise InputError(f"task.data.dataset {data['dataset']!r} is not one of {sorted([*SPLIT_BY, SYNTHETIC])}")
    if data["dataset"] != SYNTHETIC and not data["root"]:
        raise InputError(f"task.data.root is needed for {data['dataset']} (the folder holding "
                         f"{data['dataset']}/ and images/)")
    if parsed["eval"]["space"] not in SPACES:
        raise InputError(f"task.eval.space must be one of {SPACES}, got {parsed['eval']['space']!r}")
    return parsed


class EncodedReferring:
    """A referring dataset as model inputs: normalised image, token ids / mask, target mask, no-target flag.

    ``train=True``: one random sentence per referent (global RNG) and a mask resized to the input size.
    ``train=False``: the item's sentence (``sentence_of``) and the mask at the original resolution.
    """

    def __init__(self, base: Any, tokenizer: Any, size: int, train: bool) -> None:
        self.base, self.tokenizer, self.size, self.train = base, tokenizer, size, train

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.base.sample(index)
        if not sample.sentences:
            raise InputError(f"ref {sample.ref_id} has no sentence")
        count = len(sample.sentences)
        sentence = sample.sentences[random.randrange(count) if self.train else index % count]
        input_ids, attention_mask = self.tokenizer([sentence])
        mask = resize_mask(sample.mask, self.size) if self.train else torch.from_numpy(sample.mask.astype("uint8"))
        return {
            "image": resize_normalize(sample.image, self.size),  # (3, S, S)
            "input_ids": input_ids[0],  # (N,)
            "attention_mask": attention_mask[0],  # (N,)
            "mask": mask,  # (S, S) in training, (H, W) in evaluation
            "no_target": bool(sample.no_target),
        }


def collate(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack inputs; masks are stacked when they share a size, else kept as a list (original sizes)."""
    masks = [item["mask"] for item in items]
    same = all(mask.shape == masks[0].shape for mask in masks)
    return {
        "image": torch.stack([item["image"] for item in items]),
        "input_ids": torch.stack([item["input_ids"] for item in items]),
        "attention_mask": torch.stack([item["attention_mask"] for item in items]),
        "mask": torch.stack(masks) if same else masks,
        "no_target": torch.tensor([item["no_target"] for item in items], dtype=torch.bool),
    }


class ReferringTask:
    """The engine Task for ReferSAM (see the module docstring for the settings)."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = parse_settings(settings)
        model = self.settings["model"]
        from samkit.referring.config import BACKBONE_TO_SAM_TYPE

        self.sam_type = BACKBONE_TO_SAM_TYPE[model["backbone"]]
        self.image_size = int(model["image_size"])
        self.space = self.settings["eval"]["space"]
        self._tokenizer: Any = None
        self._loss: nn.Module | None = None

    # ---- model --------------------------------------------------------------------------------
    @property
    def tokenizer(self) -> Any:
        """The text model's tokenizer, padded / truncated to ``text_max_length`` (built once)."""
        if self._tokenizer is None:
            from samkit.referring.text import Tokenizer

            model = self.settings["model"]
            self._tokenizer = Tokenizer(str(model["text_encoder"]), int(model["text_max_length"]))
        return self._tokenizer

    def _text_source(self) -> Any:
        model = self.settings["model"]
        if model["text_pretrained"]:
            return str(model["text_encoder"])
        import transformers

        from samkit.referring.text import resolve_text_source

        config = transformers.AutoConfig.from_pretrained(resolve_text_source(str(model["text_encoder"])))
        for key, value in model["text_overrides"].items():
            if not hasattr(config, key):
                raise InputError(f"task.model.text_overrides: the text config has no field {key!r}")
            setattr(config, key, value)
        return config

    def build_model(self) -> nn.Module:
        """ReferSAM from the SAM / text weights (engine-seeded init), then ``checkpoint`` if given."""
        from samkit.referring.build import build_refersam, load_refersam_checkpoint

        model = self.settings["model"]
        refersam = build_refersam(self.sam_type, self._text_source(), sam_checkpoint=model["backbone_checkpoint"],
                                  official_compat=bool(model["official_compat"]))
        refersam.set_activation_checkpointing(bool(model["activation_checkpointing"]))
        if model["checkpoint"]:
            load_refersam_checkpoint(refersam, model["checkpoint"], sam_type=self.sam_type)
        return refersam

    def load_weights(self, model: nn.Module, path: Path) -> None:
        """Load a ``best.pt`` / ``last.pt`` or an official-layout ReferSAM state_dict (checked head / backbone)."""
        from samkit.referring.build import load_refersam_checkpoint

        load_refersam_checkpoint(model, path, sam_type=self.sam_type)

    def frozen_modules(self, model: nn.Module) -> list[str]:
        """CLIP text is frozen (official); BERT-like text and everything else train; plus ``model.frozen``."""
        frozen = ["text_encoder"] if getattr(model, "using_clip", False) else []
        return frozen + [str(name) for name in self.settings["model"]["frozen"]]

    # ---- data ---------------------------------------------------------------------------------
    def _dataset(self, split: str, train: bool) -> EncodedReferring:
        data = self.settings["data"]
        if data["dataset"] == SYNTHETIC:
            count = int(data["train_samples"] if train else data["val_samples"])
            base: Any = SyntheticReferringDataset(
                count, size=int(data["synthetic_size"] or self.image_size),
                seed=int(data["seed"]) + (0 if train else VAL_SEED_OFFSET),
                no_target_ratio=float(data["no_target_ratio"]))
        else:
            base = ReferringDataset(data["root"], data["dataset"], split, split_by=data["split_by"],
                                    image_dir=data["image_dir"], per_sentence=not train,
                                    official_compat=bool(self.settings["model"]["official_compat"]))
        return EncodedReferring(base, self.tokenizer, self.image_size, train)

    def train_dataset(self) -> EncodedReferring:
        return self._dataset(str(self.settings["data"]["train_split"]), train=True)

    def val_dataset(self) -> EncodedReferring | None:
        split = self.settings["data"]["val_split"]
        return None if split is None else self._dataset(str(split), train=False)

    collate = staticmethod(collate)

    # ---- steps --------------------------------------------------------------------------------
    @property
    def loss(self) -> nn.Module:
        if self._loss is None:
            from samkit.referring.loss import ReferringLoss

            loss = self.settings["loss"]
            self._loss = ReferringLoss(int(loss["num_points"]), float(loss["oversample_ratio"]),
                                       float(loss["importance_sample_ratio"]), LossWeights(**loss["weights"]),
                                       official_compat=bool(self.settings["model"]["official_compat"]))
        return self._loss

    def training_step(self, model: nn.Module, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict]:
        """BCE + Dice on the final and coarse masks; logs the four terms."""
        pred, coarse = model(batch["image"], batch["input_ids"], batch["attention_mask"])
        losses = self.loss(pred, batch["mask"], coarse)
        return losses["total_loss"], {key: losses[key].detach() for key in LOSS_KEYS if key != "total_loss"}

    def eval_step(self, model: nn.Module, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """The batch's summable ReferringMetrics state (float64 sums and counts)."""
        pred, _ = model(batch["image"], batch["input_ids"], batch["attention_mask"])  # (B, S, S)
        metrics = ReferringMetrics()
        for logits, target, no_target in zip(pred, batch["mask"], batch["no_target"]):
            predicted, truth = eval_masks(logits[None], target[None], self.space)
            metrics.update(predicted, truth, [bool(no_target)])
        return {STATE_KEY: torch.from_numpy(metrics.state())}

    def compute_metrics(self, totals: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """Every referring metric that is defined on this split (oIoU, mIoU, Prec@X, cIoU, gIoU, N-acc, ...)."""
        metrics = ReferringMetrics()
        metrics.load_state(totals[STATE_KEY].cpu().numpy())
        return {name: float(value) for name, value in metrics.compute().items() if value is not None}


def build_task(settings: Mapping[str, Any]) -> ReferringTask:
    """Task factory for ``samkit train referring`` / ``samkit eval referring``."""
    return ReferringTask(settings)
