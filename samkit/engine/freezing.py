"""Frozen modules: no gradient, not in the optimizer, and (if the task says so) kept in eval mode.

A task names either the modules to train (``trainable_modules``: everything else is frozen) or the
modules to freeze (``frozen_modules``), or both. Parameters a model already built with
``requires_grad=False`` (e.g. a frozen text encoder) stay frozen too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from samkit.engine.task import Task, module_names


@dataclass(frozen=True)
class FreezePlan:
    """The maximal frozen sub-modules (``frozen_roots``) and whether they stay in eval mode."""

    frozen_roots: tuple[str, ...]
    eval_mode: bool


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def frozen_roots_for(model: nn.Module, trainable: Sequence[str] | None, frozen: Sequence[str]) -> list[str]:
    """Module names to freeze: the largest sub-trees outside ``trainable`` plus every ``frozen`` name."""
    roots: list[str] = []
    if trainable is not None:
        def visit(prefix: str, module: nn.Module) -> None:
            for child_name, child in module.named_children():
                name = f"{prefix}.{child_name}" if prefix else child_name
                if any(_under(name, keep) for keep in trainable):
                    continue
                if any(_under(keep, name) for keep in trainable):
                    visit(name, child)
                else:
                    roots.append(name)

        visit("", model)
    for name in frozen:
        if not any(_under(name, root) for root in roots):
            roots = [root for root in roots if not _under(root, name)] + [name]
    return sorted(roots)


def apply_freeze(model: nn.Module, task: Task) -> FreezePlan:
    """Set ``requires_grad=False`` under the task's frozen modules and return the plan."""
    trainable = module_names(task, model, "trainable_modules")
    frozen = module_names(task, model, "frozen_modules") or []
    roots = frozen_roots_for(model, trainable, frozen)
    if trainable is not None:
        # parameters held directly by the root module (not by a child) are frozen too
        for parameter in model.parameters(recurse=False):
            parameter.requires_grad_(False)
    modules = dict(model.named_modules())
    for root in roots:
        modules[root].requires_grad_(False)
    return FreezePlan(frozen_roots=tuple(roots), eval_mode=bool(getattr(task, "frozen_in_eval_mode", True)))


def set_train_mode(model: nn.Module, plan: FreezePlan) -> None:
    """``model.train()``, then put the frozen sub-modules back into eval mode when the plan says so."""
    model.train()
    if plan.eval_mode:
        modules = dict(model.named_modules())
        for root in plan.frozen_roots:
            modules[root].eval()


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters the optimizer updates, in ``model.parameters()`` order."""
    return [parameter for parameter in model.parameters() if parameter.requires_grad]
