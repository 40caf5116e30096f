"""The training loop shared by every trainable head.

One process or ``torchrun`` DDP; AdamW with a per-step schedule; bf16 autocast on CUDA only;
gradient-norm clipping; frozen modules; validation, best / last checkpoints, a JSONL log and a
results file. ``resume=True`` continues from ``<output_dir>/last.pt`` and reproduces the
uninterrupted run bit for bit on the CPU with the same number of processes (everything that
decides the next step - weights, AdamW moments, schedule position, data position, per-sample
augmentation seeds and every rank's RNG states - is in the checkpoint or derived from the step).
"""

from __future__ import annotations

import os
import random
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from samkit.engine.config import EngineConfig, Experiment, read_experiment
from samkit.engine.distributed import DistContext, gather_objects, init_distributed, mean_over_ranks, shutdown
from samkit.engine.evaluation import evaluate_model
from samkit.engine.freezing import FreezePlan, apply_freeze, set_train_mode, trainable_parameters
from samkit.engine.runtime import autocast_for, make_loader, to_device
from samkit.engine.sampling import TrainBatchSampler, sample_seed, steps_per_epoch
from samkit.engine.schedule import StepSchedule
from samkit.engine.state import (
    BEST_NAME,
    LAST_NAME,
    LOG_NAME,
    RESULTS_NAME,
    MetricsLog,
    capture_rng,
    load_training_checkpoint,
    restore_rng,
    save_training_checkpoint,
    write_results,
)
from samkit.engine.task import Task, build_task, check_task
from samkit.errors import InputError

RANK_SEED_STREAM = 2
RESUME_FREE_KEYS = frozenset({"output_dir", "workers", "progress", "device", "eval_batch_size",
                              "log_every_iterations", "checkpoint_every_iterations"})
"""Engine settings that may change between a run and its resumption (they do not alter the weights)."""


@dataclass
class TrainResult:
    """What ``train`` returns: the trained (bare) model, the last validation metrics and the best."""

    model: nn.Module
    steps: int
    metrics: dict[str, float] = field(default_factory=dict)
    stopped_early: bool = False
    best: dict[str, Any] = field(default_factory=dict)
    output_dir: Path = Path(".")


def _split_step_output(output: Any, task: Task) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    loss, extras = (output if isinstance(output, tuple) else (output, {}))
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise InputError(f"{type(task).__name__}.training_step must return a scalar loss tensor (or (loss, dict))")
    return loss, dict(extras)


class Trainer:
    """One training run; ``run()`` does the work. Use ``samkit.engine.train`` rather than this class."""

    def __init__(self, engine: EngineConfig, task: Task, context: DistContext) -> None:
        self.engine, self.task, self.context = engine, task, context
        self.output_dir = Path(engine.output_dir)
        self.log = MetricsLog(self.output_dir / LOG_NAME)
        random.seed(engine.seed)
        np.random.seed(engine.seed)
        torch.manual_seed(engine.seed)
        self.model = task.build_model()
        self.plan: FreezePlan = apply_freeze(self.model, task)
        self.model.to(context.device)
        parameters = trainable_parameters(self.model)
        if not parameters:
            raise InputError(f"{type(task).__name__}: every parameter is frozen; there is nothing to train")
        self.optimizer = torch.optim.AdamW(parameters, lr=engine.lr, betas=engine.betas, eps=engine.eps,
                                           weight_decay=engine.weight_decay)
        self.train_set = task.train_dataset()
        self.val_set = task.val_dataset()
        self.steps_per_epoch = steps_per_epoch(len(self.train_set), engine.batch_size)
        self.total_steps = engine.iterations or engine.epochs * self.steps_per_epoch
        self.schedule = StepSchedule(self.optimizer, engine, self.total_steps)
        self.step = 0
        self.best: dict[str, Any] = {"metric": engine.best_metric, "value": None, "step": None}
        self.metrics: dict[str, float] = {}
        self.log_sums: dict[str, float] = {}
        self.log_count = 0
        self._seed_rank()
        self.wrapped = self._wrap()

    def _seed_rank(self) -> None:
        """Give each rank its own RNG streams for the training steps (dropout and the like)."""
        seed = sample_seed(self.engine.seed, RANK_SEED_STREAM, self.context.rank)
        random.seed(seed)
        np.random.seed(seed >> 32)
        torch.manual_seed(seed)

    def _wrap(self) -> nn.Module:
        if not self.context.distributed:
            return self.model
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.context.device.index] if self.context.device.type == "cuda" else None
        return DistributedDataParallel(self.model, device_ids=device_ids,
                                       find_unused_parameters=self.engine.find_unused_parameters)

    # ---- resume -------------------------------------------------------------------------------
    def restore(self, resume: bool) -> None:
        """Load ``last.pt`` when resuming; refuse to overwrite an existing run otherwise."""
        last = self.output_dir / LAST_NAME
        if not last.is_file():
            if resume and self.context.is_main:
                print(f"samkit train: no checkpoint in {self.output_dir}; starting from scratch")
            return
        if not resume:
            raise InputError(
                f"{self.output_dir} already holds a training run ({LAST_NAME}); pass resume=True (--resume) "
                "to continue it, or choose another engine.output_dir"
            )
        checkpoint = load_training_checkpoint(last)
        changed = sorted(key for key, value in self.engine.to_dict().items()
                         if key not in RESUME_FREE_KEYS and checkpoint["engine"].get(key) != value)
        if changed:
            raise InputError(
                f"cannot resume {last}: engine settings {changed} differ from the run that wrote it "
                f"(only {sorted(RESUME_FREE_KEYS)} may change)"
            )
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.schedule.load_state_dict(checkpoint["scheduler"])
        self.step, self.best, self.metrics = int(checkpoint["step"]), dict(checkpoint["best"]), dict(checkpoint["metrics"])
        self.log_sums, self.log_count = dict(checkpoint["log_window"]["sums"]), int(checkpoint["log_window"]["count"])
        states = checkpoint["rng"]
        if checkpoint["world_size"] != self.context.world_size:
            warnings.warn(f"resuming a {checkpoint['world_size']}-process run with {self.context.world_size} "
                          "processes: the run continues, but not bit for bit", stacklevel=2)
        restore_rng(states[self.context.rank] if self.context.rank < len(states) else states[0])
        if self.context.is_main:
            self.log.truncate_after(self.step)

    # ---- checkpoints --------------------------------------------------------------------------
    def save_last(self) -> None:
        states = gather_objects(capture_rng(), self.context)
        if not self.context.is_main:
            return
        epoch, batch = divmod(self.step, self.steps_per_epoch)
        save_training_checkpoint(
            self.output_dir / LAST_NAME, self.model.state_dict(),
            optimizer=self.optimizer.state_dict(), scheduler=self.schedule.state_dict(), rng=states,
            step=self.step, sampler={"epoch": epoch, "batch": batch, "seed": self.engine.seed},
            best=self.best, metrics=self.metrics, engine=self.engine.to_dict(), world_size=self.context.world_size,
            log_window={"sums": self.log_sums, "count": self.log_count},
        )

    def _update_best(self, metrics: Mapping[str, float]) -> None:
        name = self.engine.best_metric
        if name is None:
            return
        if name not in metrics:
            raise InputError(f"engine.best_metric {name!r} is not among the validation metrics {sorted(metrics)}")
        value, previous = metrics[name], self.best["value"]
        better = previous is None or (value > previous if self.engine.best_mode == "max" else value < previous)
        if not better:
            return
        self.best = {"metric": name, "value": value, "step": self.step}
        if self.context.is_main:
            save_training_checkpoint(self.output_dir / BEST_NAME, self.model.state_dict(), best=self.best,
                                     engine=self.engine.to_dict())

    # ---- the loop -----------------------------------------------------------------------------
    def _eval_due(self) -> bool:
        if self.val_set is None:
            return False
        engine, step = self.engine, self.step
        if step == self.total_steps or (engine.eval_every_iterations and step % engine.eval_every_iterations == 0):
            return True
        if engine.eval_mid_epoch_from is not None:
            epoch, done_in_epoch = divmod(step - 1, self.steps_per_epoch)
            middle = round(self.steps_per_epoch / 2) + 1
            if epoch >= engine.eval_mid_epoch_from and done_in_epoch + 1 == middle:
                return True
        epoch, in_epoch = divmod(step, self.steps_per_epoch)
        if in_epoch:
            return False
        last_epoch = -(-self.total_steps // self.steps_per_epoch)
        return bool((engine.eval_every_epochs and epoch % engine.eval_every_epochs == 0)
                    or epoch > last_epoch - engine.eval_last_epochs)

    def _stop_early(self, epoch: int) -> bool:
        """True at the start of ``epoch`` when ``early_stop_epochs`` whole epochs brought no better best."""
        patience = self.engine.early_stop_epochs
        if patience is None:
            return False
        best_step = self.best.get("step")
        best_epoch = -1 if best_step is None else (best_step - 1) // self.steps_per_epoch
        return epoch - best_epoch - 1 >= patience

    def _validate(self) -> None:
        _, self.metrics = evaluate_model(self.model, self.task, self.val_set, self.engine, self.context,
                                         description=f"val @ {self.step}")
        set_train_mode(self.model, self.plan)
        self._update_best(self.metrics)
        if self.context.is_main:
            self.log.append({"kind": "val", "step": self.step, "epoch": self.step / self.steps_per_epoch,
                             **self.metrics})

    def _train_step(self, batch: Any) -> dict[str, float]:
        with autocast_for(self.engine, self.context.device):
            loss, extras = _split_step_output(self.task.training_step(self.wrapped, batch), self.task)
        value = float(loss.detach())
        if not np.isfinite(value):
            raise FloatingPointError(f"the training loss is {value} at step {self.step}; stopping")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        logs = {"loss": value, **{name: float(item) for name, item in extras.items()}}
        if self.engine.clip_grad_norm is not None:
            norm = torch.nn.utils.clip_grad_norm_(self.optimizer.param_groups[0]["params"], self.engine.clip_grad_norm)
            logs["grad_norm"] = float(norm)
        self.optimizer.step()
        return logs

    def _log_train(self, lr: float, bar: Any) -> None:
        """Log the means over the steps since the last train record (this window survives a resume)."""
        means = mean_over_ranks({name: value / self.log_count for name, value in self.log_sums.items()}, self.context)
        self.log_sums, self.log_count = {}, 0
        if self.context.is_main:
            self.log.append({"kind": "train", "step": self.step, "epoch": self.step / self.steps_per_epoch,
                             "lr": lr, **means})
            if bar is not None:
                bar.set_postfix(loss=f"{means['loss']:.4f}", lr=f"{lr:.2e}")

    def run(self) -> TrainResult:
        bar = None
        if self.engine.progress and self.context.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.total_steps, initial=self.step, desc="train", dynamic_ncols=True)
        set_train_mode(self.model, self.plan)
        stopped_early = False
        while self.step < self.total_steps:
            epoch, in_epoch = divmod(self.step, self.steps_per_epoch)
            if in_epoch == 0 and self._stop_early(epoch):
                stopped_early = True
                if self.context.is_main:
                    print(f"samkit train: stopping early at epoch {epoch}: {self.best['metric']} has not improved "
                          f"for {self.engine.early_stop_epochs} epochs (best {self.best['value']} at step "
                          f"{self.best['step']})")
                break
            sampler = TrainBatchSampler(len(self.train_set), self.engine.batch_size, rank=self.context.rank,
                                        world_size=self.context.world_size, seed=self.engine.seed,
                                        epoch=epoch, start=in_epoch)
            for batch in make_loader(self.train_set, sampler, self.task, self.engine):
                lr = self.schedule.apply(self.step)
                for name, value in self._train_step(to_device(batch, self.context.device)).items():
                    self.log_sums[name] = self.log_sums.get(name, 0.0) + value
                self.log_count += 1
                self.step += 1
                if bar is not None:
                    bar.update(1)
                if self.step % self.engine.log_every_iterations == 0 or self.step == self.total_steps:
                    self._log_train(lr, bar)
                evaluated = self._eval_due()
                if evaluated:
                    self._validate()
                every = self.engine.checkpoint_every_iterations
                if (evaluated or self.step % self.steps_per_epoch == 0 or self.step == self.total_steps
                        or (every and self.step % every == 0)):
                    self.save_last()
                if self.step == self.total_steps:
                    break
        if bar is not None:
            bar.close()
        if self.context.is_main:
            write_results(self.output_dir / RESULTS_NAME, {"metrics": self.metrics, "best": self.best,
                                                           "steps": self.step, "stopped_early": stopped_early,
                                                           "world_size": self.context.world_size})
        return TrainResult(model=self.model, steps=self.step, metrics=self.metrics, stopped_early=stopped_early,
                           best=self.best, output_dir=self.output_dir)


def train(config: str | os.PathLike[str] | Mapping[str, Any] | Experiment, task: Task | None = None, *,
          head: str | None = None, resume: bool = False) -> TrainResult:
    """Train ``task`` (or the task of ``head``, built from the config's ``task:`` section).

    ``config`` is an experiment YAML path, a dict ``{"engine": {...}, "task": {...}}`` or an
    ``Experiment``. ``resume=True`` continues from ``<output_dir>/last.pt`` (or starts afresh if
    there is none); without it, an output_dir that already holds a run is an error. Under
    ``torchrun`` every process calls this; rank 0 writes the files.
    """
    experiment = read_experiment(config)
    if task is None:
        if head is None:
            raise InputError("train needs a task object or a head name (head='fewshot' / 'referring' / 'toy')")
        task = build_task(head, experiment.task)
    context = init_distributed(experiment.engine.device)
    try:
        trainer = Trainer(experiment.engine, check_task(task), context)
        trainer.restore(resume)
        return trainer.run()
    finally:
        shutdown(context)
