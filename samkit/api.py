"""The ``Segmenter`` base class and ``samkit.load``: one loading contract and one predict order for every head.

Heads are declared in ``samkit.registry`` (built-in spec modules and the ``samkit.heads`` entry-point
group); ``load`` looks the name up, imports its builder lazily, checks the options against the
builder's signature and builds the segmenter.
"""

from __future__ import annotations

import abc
import importlib
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from samkit.building import resolve_device
from samkit.errors import InputError
from samkit.registry import HeadSpec, get_spec, list_specs

if TYPE_CHECKING:
    import torch

__all__ = ["LOAD_KEYWORDS", "Segmenter", "list_models", "load", "resolve_device"]

LOAD_KEYWORDS = ("backbone", "checkpoint", "backbone_checkpoint", "device")
"""The keywords every head's builder takes, besides its own options."""
MODEL_KINDS = ("head", "backbone", "image", "video")


class Segmenter(abc.ABC):
    """One segmentation method behind ``predict``: a head over a SAM / SAM 2 backbone.

    Subclasses set ``spec`` (their ``HeadSpec``), ``model`` (the ``nn.Module``), ``config`` (a dict)
    and ``device``, and implement ``predict(inputs, prompt=None, *, prompts=None, **options)``.

    Thread safety: a segmenter's model weights are shared and read-only (eval mode, no gradients), so
    one segmenter may serve several threads. ``predict`` is safe to call from several threads at
    once; a head whose upstream predictor keeps per-image state serialises that part internally (the
    image head locks around ``set_image`` + decoding). Mutable tracking state lives in sessions: each
    session (``LongVideoSegmenter.session``) owns its state and must be used by one thread at a time;
    different sessions may run in different threads.

    Resources: ``close()`` (idempotent; also on leaving a ``with`` block) releases what the segmenter
    holds besides the weights; a closed segmenter refuses ``predict``.
    """

    spec: HeadSpec
    model: torch.nn.Module
    config: dict[str, Any]
    device: torch.device
    _closed: bool = False

    @classmethod
    def from_config(
        cls,
        path_or_dict: str | Path | Mapping[str, Any],
        *,
        checkpoint: str | Path | None = None,
        backbone: str | None = None,
        backbone_checkpoint: str | Path | None = None,
        device: str | torch.device | None = None,
        **options: Any,
    ) -> Segmenter:
        """Build from a YAML file or a dict whose ``model`` key names a registered head.

        The other keys are ``samkit.load`` keywords and head options. A key given both in the config
        and as an argument is an InputError naming it.
        """
        from samkit.config import read_config

        config = dict(read_config(path_or_dict))
        name = config.pop("model", None)
        if name is None:
            raise InputError("a samkit config needs a 'model' key naming a registered model (see samkit.list_models())")
        given = {"checkpoint": checkpoint, "backbone": backbone, "backbone_checkpoint": backbone_checkpoint,
                 "device": device, **options}
        given = {key: value for key, value in given.items() if value is not None}
        repeated = sorted(set(config) & set(given))
        if repeated:
            raise InputError(f"{', '.join(repeated)} given both in the config and as an argument; "
                             "set each option in one place")
        segmenter = load(str(name), **{**config, **given})
        if not isinstance(segmenter, cls):
            raise InputError(f"config model {name!r} builds a {type(segmenter).__name__}, not a {cls.__name__}")
        return segmenter

    @abc.abstractmethod
    def predict(self, inputs: Any, prompt: Any = None, *, prompts: Mapping[int, Any] | None = None,
                **options: Any) -> Any:
        """Segment ``inputs`` given ``prompt`` (object 1) or ``prompts={obj_id: prompt | [prompts]}``."""

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Release what the segmenter holds besides its weights; calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        self._release()

    def _release(self) -> None:
        """Hook for subclasses: free per-segmenter resources (cached features, open sessions)."""

    def _ensure_open(self) -> None:
        if self._closed:
            raise InputError(f"this {type(self).__name__} is closed; load a new one with samkit.load(...)")

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = ", closed" if self._closed else ""
        return f"{type(self).__name__}(model={self.config.get('name', '?')!r}, device={self.device}{state})"


def list_models(kind: str | None = None, *, planned: bool = False) -> list[str]:
    """Names ``samkit.load`` accepts: heads first, then the backbones' own image segmenters.

    ``kind``: ``"head"`` or ``"backbone"`` (a backbone's own segmenter), ``"image"`` or ``"video"``
    (the input the model takes). ``planned=True`` adds heads declared but not implemented yet.
    """
    if kind is not None and kind not in MODEL_KINDS:
        raise InputError(f"kind must be one of {MODEL_KINDS} or None, got {kind!r}")
    names = []
    for spec in list_specs():
        if spec.status == "planned" and not planned:
            continue
        if kind == "head" and spec.is_backbone or kind == "backbone" and not spec.is_backbone:
            continue
        if kind in ("image", "video") and spec.input_kind != kind:
            continue
        names.append(spec.name)
    return names


def load(
    name: str,
    *,
    backbone: str | None = None,
    checkpoint: str | Path | None = None,
    backbone_checkpoint: str | Path | None = None,
    device: str | torch.device = "auto",
    **options: Any,
) -> Segmenter:
    """Build the segmenter registered as ``name``.

    ``checkpoint``: the weights of what is loaded (a local file or a known id: for a trainable head
    the whole model, for SAM2Long / SAM 2 / an image segmenter the backbone's file).
    ``backbone_checkpoint``: public backbone weights to initialise a trainable head from.
    ``options``: the head's own options; unknown ones are an InputError listing the accepted ones.
    """
    if not isinstance(name, str):
        raise InputError(f"samkit.load takes a model name (str), got {type(name).__name__}")
    spec = get_spec(name)
    if spec.status == "planned":
        available = ", ".join(list_models(kind="head"))
        raise InputError(f"{name!r} is planned but not implemented in this version of samkit ({spec.description}); "
                         f"available heads: {available}")
    builder = _import_builder(spec)
    _check_options(spec, builder, options)
    segmenter = builder(spec, backbone=backbone, checkpoint=checkpoint, backbone_checkpoint=backbone_checkpoint,
                        device=device, **options)
    if not isinstance(segmenter, Segmenter):
        raise InputError(f"the builder {spec.builder} of {name!r} (from {spec.source}) returned a "
                         f"{type(segmenter).__name__}, not a samkit.Segmenter")
    return segmenter


def _import_builder(spec: HeadSpec) -> Callable[..., Segmenter]:
    module_name, _, attribute = spec.builder.partition(":")
    try:
        builder = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise InputError(f"head {spec.name!r} (from {spec.source}) could not be imported: builder {spec.builder} "
                         f"failed with {type(error).__name__}: {error}") from error
    if not callable(builder):
        raise InputError(f"head {spec.name!r}: builder {spec.builder} is not callable")
    return builder


def _check_options(spec: HeadSpec, builder: Callable[..., Segmenter], options: Mapping[str, Any]) -> None:
    """Unknown head options are an InputError naming them and the accepted ones."""
    parameters = list(inspect.signature(builder).parameters.values())[1:]  # the first takes the spec
    if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters):
        return
    missing = [keyword for keyword in LOAD_KEYWORDS if keyword not in {parameter.name for parameter in parameters}]
    if missing:
        raise InputError(f"head {spec.name!r} (from {spec.source}): builder {spec.builder} does not take "
                         f"{', '.join(missing)}; every builder takes {', '.join(LOAD_KEYWORDS)}")
    accepted = [parameter.name for parameter in parameters
                if parameter.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                and parameter.name not in LOAD_KEYWORDS]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise InputError(f"unknown option(s) {unknown} for {spec.name!r}; accepted: {', '.join(LOAD_KEYWORDS)}"
                         + (f", {', '.join(accepted)}" if accepted else ""))
