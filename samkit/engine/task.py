"""The ``Task`` protocol: everything the engine needs from a head, and the head -> factory lookup.

A head plugs into the engine by writing one object with these methods (no base class needed):

* ``build_model() -> nn.Module``: called after the engine has seeded torch, identically on every rank.
* ``train_dataset()`` / ``val_dataset()``: map-style datasets (``__len__`` / ``__getitem__``);
  ``val_dataset`` may return ``None``. Augmentations may use ``random``, ``numpy.random`` and
  ``torch`` freely: the engine seeds all three per sample from (seed, epoch, index), so a sample
  is the same whatever the number of ranks, workers or resumptions.
* ``training_step(model, batch) -> loss`` or ``(loss, {name: scalar})``: the mean loss over the
  rank's part of the batch (the engine runs it under autocast and averages gradients over ranks).
* ``eval_step(model, batch) -> {name: tensor}``: statistics that are SUMMED over batches and
  ranks (intersections, unions, counts); ``compute_metrics(totals) -> {name: float}`` turns the
  sums into metrics.

Optional attributes (defaults in brackets): ``collate(samples)`` [torch's default_collate],
``trainable_modules(model)`` [None: every module], ``frozen_modules(model)`` [()],
``frozen_in_eval_mode`` [True], ``load_weights(model, path)`` [strict samkit.checkpoints.load_into].

A head registers its factory ``build_task(task_config: dict) -> Task`` in ``HEADS`` below; the
module is imported only when that head is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from samkit.errors import InputError

if TYPE_CHECKING:
    import torch
    from torch import nn

HEADS: dict[str, str] = {
    "fewshot": "samkit.fewshot.task:build_task",
    "referring": "samkit.referring.task:build_task",
    "toy": "samkit.engine.toy:build_task",
}
"""Head name (as in ``samkit train <head>``) -> ``module:factory`` of its task factory."""

REQUIRED_METHODS = ("build_model", "train_dataset", "val_dataset", "training_step", "eval_step", "compute_metrics")


@runtime_checkable
class Task(Protocol):
    """What a head provides to the engine (see the module docstring)."""

    def build_model(self) -> nn.Module: ...

    def train_dataset(self) -> Any: ...

    def val_dataset(self) -> Any | None: ...

    def training_step(self, model: nn.Module, batch: Any) -> torch.Tensor | tuple[torch.Tensor, Mapping]: ...

    def eval_step(self, model: nn.Module, batch: Any) -> Mapping[str, torch.Tensor]: ...

    def compute_metrics(self, totals: Mapping[str, torch.Tensor]) -> Mapping[str, float]: ...


def check_task(task: object) -> Task:
    """Return ``task`` if it has every required method, else InputError naming the missing ones."""
    missing = [name for name in REQUIRED_METHODS if not callable(getattr(task, name, None))]
    if missing:
        raise InputError(
            f"{type(task).__name__} is not a samkit.engine Task: it lacks {missing} "
            f"(a Task needs {list(REQUIRED_METHODS)})"
        )
    return task  # type: ignore[return-value]


def task_factory(head: str) -> Callable[[Mapping[str, Any]], Task]:
    """Import the task factory of ``head`` (lazily); unknown or missing heads raise InputError."""
    if head not in HEADS:
        raise InputError(f"unknown head {head!r} for training / evaluation; known heads: {sorted(HEADS)}")
    module_name, _, attribute = HEADS[head].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            raise InputError(
                f"head {head!r} has no training task in this samkit installation ({module_name} is missing)"
            ) from None
        raise
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise InputError(f"head {head!r}: {module_name} defines no task factory {attribute!r}")
    return factory


def build_task(head: str, task_config: Mapping[str, Any]) -> Task:
    """The head's Task for ``task_config`` (the experiment's ``task:`` section), checked."""
    return check_task(task_factory(head)(dict(task_config)))


def collate_fn(task: Task) -> Callable[[list[Any]], Any]:
    """The task's ``collate`` or torch's ``default_collate``."""
    custom = getattr(task, "collate", None)
    if callable(custom):
        return custom
    from torch.utils.data import default_collate

    return default_collate


def module_names(task: Task, model: nn.Module, method: str) -> Sequence[str] | None:
    """The task's optional ``trainable_modules`` / ``frozen_modules`` answer, checked against the model."""
    answer = getattr(task, method, None)
    if answer is None:
        return None
    names = list(answer(model)) if callable(answer) else list(answer)
    known = dict(model.named_modules())
    unknown = [name for name in names if not isinstance(name, str) or not name or name not in known]
    if unknown:
        raise InputError(f"{type(task).__name__}.{method} names modules the model does not have: {unknown}")
    return names
