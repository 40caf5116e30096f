"""Learning-rate schedules as pure functions of the step: poly decay, optional linear warm-up.

The lr of a step depends on nothing but the step index, so a resumed run needs only the step
count to continue the schedule exactly.
"""

from __future__ import annotations

from torch.optim import Optimizer

from samkit.engine.config import EngineConfig


def lr_at(step: int, total_steps: int, config: EngineConfig) -> float:
    """The learning rate of 0-based ``step`` out of ``total_steps``.

    poly: ``min_lr + (lr - min_lr) * (1 - (step + poly_offset) / total_steps) ** poly_power``
    (clamped at 0); constant: ``lr``. During the first ``warmup_iterations`` steps the result is
    multiplied by ``warmup_factor + (1 - warmup_factor) * step / warmup_iterations``.
    """
    if config.schedule == "poly":
        progress = min(max((step + config.poly_offset) / total_steps, 0.0), 1.0)
        decay = (1.0 - progress) ** config.poly_power
    else:
        decay = 1.0
    rate = config.min_lr + (config.lr - config.min_lr) * decay
    if step < config.warmup_iterations:
        rate *= config.warmup_factor + (1.0 - config.warmup_factor) * step / config.warmup_iterations
    return rate


class StepSchedule:
    """Sets every parameter group's lr from ``lr_at`` before each optimizer step."""

    def __init__(self, optimizer: Optimizer, config: EngineConfig, total_steps: int) -> None:
        self.optimizer, self.config, self.total_steps = optimizer, config, total_steps
        self.step_index = 0

    def apply(self, step: int) -> float:
        """Set the lr for ``step`` and remember it; returns the lr."""
        rate = lr_at(step, self.total_steps, self.config)
        for group in self.optimizer.param_groups:
            group["lr"] = rate
        self.step_index = step
        return rate

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step_index, "total_steps": self.total_steps}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step_index = int(state["step"])
        self.total_steps = int(state["total_steps"])
