"""Sharded evaluation: each rank runs its share of the samples, statistics are summed over ranks,
metrics are computed from the sums (identical on every rank) and rank 0 writes the results file.

Summing counts (intersections, unions, hits) rather than averaging per-rank metrics makes the
result independent of the number of ranks: an N-process evaluation equals the 1-process one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from samkit.checkpoints import load_into
from samkit.engine.config import EngineConfig, Experiment, read_experiment
from samkit.engine.distributed import (
    DistContext,
    broadcast_object,
    init_distributed,
    shutdown,
    sum_statistics,
)
from samkit.engine.runtime import autocast_for, make_loader, progress, to_device
from samkit.engine.sampling import EvalBatchSampler
from samkit.engine.state import write_results
from samkit.engine.task import Task, build_task, check_task
from samkit.errors import InputError

EVAL_RESULTS_NAME = "eval_results.json"


def _accumulate(totals: dict[str, torch.Tensor], stats: Mapping[str, torch.Tensor]) -> None:
    for name, value in stats.items():
        value = torch.as_tensor(value).detach().cpu()
        value = value.to(torch.float64) if value.is_floating_point() else value.to(torch.int64)
        totals[name] = totals[name] + value if name in totals else value


def evaluate_model(model: nn.Module, task: Task, dataset: Any, config: EngineConfig, context: DistContext,
                   *, description: str = "eval") -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Run ``task.eval_step`` over this rank's shard; returns (summed statistics, metrics) on every rank.

    ``model`` is the bare module (not the DDP wrapper): ranks hold different numbers of samples.
    """
    sampler = EvalBatchSampler(len(dataset), config.eval_batch_size, rank=context.rank,
                               world_size=context.world_size, seed=config.seed)
    loader = make_loader(dataset, sampler, task, config)
    was_training = model.training
    model.eval()
    totals: dict[str, torch.Tensor] = {}
    with torch.no_grad(), autocast_for(config, context.device):
        for batch in progress(loader, context, config, desc=description, leave=False):
            stats = task.eval_step(model, to_device(batch, context.device))
            if not isinstance(stats, Mapping):
                raise InputError(f"{type(task).__name__}.eval_step must return {{name: tensor}}, got {type(stats).__name__}")
            _accumulate(totals, stats)
    model.train(was_training)
    names = _names_on_all_ranks(totals, task, context)
    summed = sum_statistics({name: totals[name] for name in names}, context)
    metrics = {name: float(value) for name, value in task.compute_metrics(summed).items()}
    return summed, metrics


def _names_on_all_ranks(totals: dict[str, torch.Tensor], task: Task, context: DistContext) -> list[str]:
    """Statistic names; a rank with an empty shard has none, so every rank agrees on rank 0's names."""
    shapes = broadcast_object({name: (tuple(value.shape), value.dtype) for name, value in totals.items()}, context)
    for name, (shape, dtype) in shapes.items():
        if name not in totals:
            totals[name] = torch.zeros(shape, dtype=dtype)
    if not shapes:
        raise InputError(f"{type(task).__name__}: the evaluation set is empty on rank 0; nothing to evaluate")
    return list(shapes)


def evaluate(config: str | os.PathLike[str] | Mapping[str, Any] | Experiment, task: Task | None = None, *,
             head: str | None = None, checkpoint: str | os.PathLike[str] | None = None,
             out: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Evaluate a trained model on the task's validation set; returns the results written by rank 0.

    ``task`` is a Task object, or ``head`` names one (``"fewshot"``, ``"referring"``, ``"toy"``)
    built from the config's ``task:`` section. ``checkpoint`` (a ``best.pt`` / ``last.pt`` or any
    state_dict file) is loaded strictly, or by the task's ``load_weights(model, path)`` if it has
    one. Results go to ``out`` (default ``<output_dir>/eval_results.json``). Under ``torchrun``
    the samples are sharded over the ranks.
    """
    experiment = read_experiment(config)
    if task is None:
        if head is None:
            raise InputError("evaluate needs a task object or a head name (head='fewshot' / 'referring' / 'toy')")
        task = build_task(head, experiment.task)
    task = check_task(task)
    engine = experiment.engine
    context = init_distributed(engine.device)
    try:
        torch.manual_seed(engine.seed)
        model = task.build_model().to(context.device)
        if checkpoint is not None:
            loader = getattr(task, "load_weights", None)
            if callable(loader):
                loader(model, Path(checkpoint))
            else:
                load_into(model, checkpoint, what=type(model).__name__)
        dataset = task.val_dataset()
        if dataset is None:
            raise InputError(f"{type(task).__name__}.val_dataset() returned None: there is nothing to evaluate")
        totals, metrics = evaluate_model(model, task, dataset, engine, context)
        results = {"metrics": metrics, "totals": totals, "samples": len(dataset), "world_size": context.world_size,
                   "checkpoint": str(checkpoint) if checkpoint is not None else None}
        if context.is_main:
            write_results(Path(out) if out is not None else Path(engine.output_dir) / EVAL_RESULTS_NAME, results)
        return results
    finally:
        shutdown(context)
