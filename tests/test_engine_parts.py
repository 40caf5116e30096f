"""Engine building blocks: sharded sampling, per-sample seeding, freezing, RNG states, logs, checkpoints."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from samkit import InputError
from samkit.checkpoints import load_into
from samkit.engine.freezing import FreezePlan, frozen_roots_for, set_train_mode
from samkit.engine.sampling import EvalBatchSampler, SeededDataset, TrainBatchSampler, sample_seed
from samkit.engine.state import (
    MetricsLog,
    capture_rng,
    load_training_checkpoint,
    restore_rng,
    save_training_checkpoint,
)


def _batches(world_size: int, start: int = 0, epoch: int = 0) -> list[list[list[int]]]:
    """[rank][step] -> dataset indices."""
    return [[[index for index, _ in batch] for batch in TrainBatchSampler(
        22, 4, rank=rank, world_size=world_size, seed=7, epoch=epoch, start=start)] for rank in range(world_size)]


def test_global_batches_do_not_depend_on_the_number_of_ranks():
    (single,) = _batches(1)
    assert len(single) == 22 // 4  # the partial last batch is dropped
    rank0, rank1 = _batches(2)
    for step, batch in enumerate(single):
        assert sorted(rank0[step] + rank1[step]) == sorted(batch)
        assert rank0[step] == batch[0::2] and rank1[step] == batch[1::2]
    assert sorted(sum(single, [])) == sorted(set(sum(single, [])))  # no repeats within an epoch
    assert _batches(1, start=3) == [single[3:]]  # resuming mid-epoch continues the same order
    assert _batches(1, epoch=1) != [single]  # a new epoch reshuffles


def test_sampler_rejects_bad_sizes():
    with pytest.raises(InputError, match="batch_size 3 .* divisible by the number of processes 2"):
        TrainBatchSampler(10, 3, rank=0, world_size=2, seed=0, epoch=0)
    with pytest.raises(InputError, match="3 samples, fewer than one batch of 4"):
        TrainBatchSampler(3, 4, rank=0, world_size=1, seed=0, epoch=0)


def test_eval_shards_cover_every_sample_once():
    shards = [[i for batch in EvalBatchSampler(11, 2, rank=r, world_size=3, seed=0) for i, _ in batch]
              for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(11))
    assert shards[0] == [0, 3, 6, 9]


class RandomDataset:
    def __len__(self) -> int:
        return 5

    def __getitem__(self, index: int) -> tuple[float, float, float]:
        return random.random(), float(np.random.uniform()), float(torch.rand(()))


def test_seeded_dataset_is_deterministic_per_key_and_restores_the_global_rngs():
    dataset = SeededDataset(RandomDataset())
    torch.manual_seed(1)
    random.seed(1)
    np.random.seed(1)
    expected = (random.random(), float(np.random.uniform()), float(torch.rand(())))
    torch.manual_seed(1)
    random.seed(1)
    np.random.seed(1)
    first = dataset[(2, sample_seed(0, 0, 2))]
    assert dataset[(2, sample_seed(0, 0, 2))] == first
    assert dataset[(2, sample_seed(0, 1, 2))] != first
    assert (random.random(), float(np.random.uniform()), float(torch.rand(()))) == expected


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
        self.decoder = nn.ModuleDict({"mask": nn.Linear(2, 2), "iou": nn.Linear(2, 1)})
        self.memory = nn.Linear(2, 2)


def test_frozen_roots_from_trainable_and_frozen_names():
    net = Net()
    assert frozen_roots_for(net, ["decoder.mask", "memory"], []) == ["decoder.iou", "encoder"]
    assert frozen_roots_for(net, None, ["encoder", "encoder.0"]) == ["encoder"]
    assert frozen_roots_for(net, ["decoder"], ["decoder.iou"]) == ["decoder.iou", "encoder", "memory"]
    set_train_mode(net, FreezePlan(frozen_roots=("encoder",), eval_mode=True))
    assert not net.encoder.training and not net.encoder[1].training and net.decoder.training
    set_train_mode(net, FreezePlan(frozen_roots=("encoder",), eval_mode=False))
    assert net.encoder[1].training


def test_rng_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    random.seed(3)
    np.random.seed(3)
    torch.manual_seed(3)
    np.random.standard_normal()  # leaves a cached gaussian in numpy's state
    state = capture_rng()
    expected = (random.random(), np.random.standard_normal(), torch.rand(3))
    net = Net()
    path = save_training_checkpoint(tmp_path / "last.pt", net.state_dict(), rng=[state], step=4)
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    restore_rng(loaded["rng"][0])
    assert (random.random(), np.random.standard_normal()) == expected[:2]
    assert torch.equal(torch.rand(3), expected[2])
    assert load_training_checkpoint(path)["step"] == 4
    load_into(Net(), path)  # the model entry loads like any samkit checkpoint


def test_non_training_checkpoint_is_refused(tmp_path):
    torch.save({"model": Net().state_dict()}, tmp_path / "plain.pt")
    with pytest.raises(InputError, match="is not a samkit training checkpoint"):
        load_training_checkpoint(tmp_path / "plain.pt")
    with pytest.raises(InputError, match="does not exist"):
        load_training_checkpoint(tmp_path / "missing.pt")


def test_metrics_log_skips_torn_lines_and_truncates_after_a_step(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    for step in (1, 2, 3):
        log.append({"step": step, "loss": torch.tensor(0.5), "bad": float("nan")})
    with open(log.path, "a") as handle:
        handle.write('{"step": 4, "lo')  # a line cut by a kill
    assert [record["step"] for record in log.records()] == [1, 2, 3]
    assert log.records()[0]["loss"] == 0.5 and log.records()[0]["bad"] == "nan"
    log.truncate_after(2)
    assert [record["step"] for record in log.records()] == [1, 2]
    assert log.path.read_text().endswith("\n")
