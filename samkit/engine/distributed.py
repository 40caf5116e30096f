"""Process-group setup under ``torchrun`` (NCCL on CUDA, gloo on CPU) and the few collectives used.

Without ``torchrun`` (no ``WORLD_SIZE`` > 1 in the environment) everything runs in one process and
the collectives are no-ops, so the same code path serves 1 and N processes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from samkit.errors import InputError


@dataclass(frozen=True)
class DistContext:
    """This process's place in the run: rank, world size and the device it computes on."""

    rank: int
    world_size: int
    device: torch.device
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _pick_device(requested: str, local_rank: int) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise InputError("engine.device is 'cuda' but CUDA is not available; use 'auto' or 'cpu'")
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_distributed(device: str = "auto") -> DistContext:
    """Join the ``torchrun`` process group if there is one (NCCL for CUDA, gloo for CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    target = _pick_device(device, local_rank)
    if world_size <= 1:
        return DistContext(rank=0, world_size=1, device=target)
    if dist.is_initialized():
        return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), device=target)
    backend = "nccl" if target.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, device_id=target if target.type == "cuda" else None)
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), device=target, owns_group=True)


def shutdown(context: DistContext) -> None:
    """Leave the process group if ``init_distributed`` created it."""
    if context.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(context: DistContext) -> None:
    if context.distributed:
        dist.barrier()


def sum_statistics(totals: Mapping[str, torch.Tensor], context: DistContext) -> dict[str, torch.Tensor]:
    """Sum each statistic over the ranks (every rank gets the sums); returns CPU tensors."""
    summed = {}
    for name in sorted(totals):
        value = totals[name].detach().to(context.device)
        if context.distributed:
            dist.all_reduce(value, op=dist.ReduceOp.SUM)
        summed[name] = value.cpu()
    return summed


def mean_over_ranks(values: Mapping[str, float], context: DistContext) -> dict[str, float]:
    """The mean of each scalar over the ranks (for logging)."""
    if not context.distributed or not values:
        return dict(values)
    names = sorted(values)
    stacked = torch.tensor([float(values[name]) for name in names], dtype=torch.float64, device=context.device)
    dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
    return {name: float(value) / context.world_size for name, value in zip(names, stacked.tolist())}


def gather_objects(value: Any, context: DistContext) -> list[Any]:
    """Every rank's ``value``, in rank order (used for per-rank RNG states)."""
    if not context.distributed:
        return [value]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def broadcast_object(value: Any, context: DistContext) -> Any:
    """Rank 0's ``value`` on every rank."""
    if not context.distributed:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]
