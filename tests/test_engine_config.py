"""Engine config validation, the lr schedules and the head lookup."""

from __future__ import annotations

import math

import pytest

from samkit import InputError
from samkit.engine import EngineConfig, read_experiment
from samkit.engine import task as task_module
from samkit.engine.schedule import lr_at
from samkit.engine.task import build_task, check_task, task_factory

BASE = {"output_dir": "runs/x", "batch_size": 8, "lr": 1e-3, "iterations": 100}


def test_yaml_experiment_is_read_and_validated(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("engine:\n  output_dir: out\n  epochs: 3\n  batch_size: 4\n  lr: 1e-3\n  weight_decay: 1e-2\n"
                    "  clip_grad_norm: 1.0\n  betas: [0.9, 0.99]\ntask:\n  size: 16\n")
    experiment = read_experiment(path)
    assert experiment.engine.lr == pytest.approx(1e-3)  # YAML 1.1 reads 1e-3 as a string
    assert experiment.engine.weight_decay == pytest.approx(1e-2)
    assert experiment.engine.betas == (0.9, 0.99)
    assert experiment.engine.epochs == 3 and experiment.engine.iterations is None
    assert experiment.task == {"size": 16}
    assert EngineConfig.from_dict(experiment.engine.to_dict()) == experiment.engine


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"learning_rate": 1.0, "epoch": 2}, "['epoch', 'learning_rate']"),
        ({"epochs": 2}, "exactly one of 'epochs' and 'iterations'"),
        ({"iterations": None}, "exactly one of 'epochs' and 'iterations'"),
        ({"batch_size": 0}, "engine.batch_size must be an integer >= 1"),
        ({"lr": -1.0}, "engine.lr must be a finite number > 0"),
        ({"lr": "fast"}, "engine.lr must be a finite number > 0"),
        ({"schedule": "cosine"}, "engine.schedule must be one of poly, constant"),
        ({"precision": "fp16"}, "engine.precision must be one of auto, fp32, bf16"),
        ({"best_mode": "up"}, "engine.best_mode must be one of max, min"),
        ({"betas": [0.9]}, "engine.betas must be two numbers"),
        ({"warmup_factor": 0}, "engine.warmup_factor must be in (0, 1]"),
        ({"find_unused_parameters": "yes"}, "engine.find_unused_parameters must be true or false"),
        ({"min_lr": 1.0}, "must not exceed engine.lr"),
        ({"early_stop_epochs": 3}, "engine.early_stop_epochs needs engine.best_metric"),
        ({"early_stop_epochs": 0, "best_metric": "iou"}, "engine.early_stop_epochs must be an integer >= 1"),
        ({"eval_mid_epoch_from": -1}, "engine.eval_mid_epoch_from must be an integer >= 0"),
    ],
)
def test_bad_engine_settings_are_named(changes, message):
    with pytest.raises(InputError) as error:
        EngineConfig.from_dict({**BASE, **changes})
    assert message in str(error.value)


def test_missing_required_and_unknown_sections_are_named():
    with pytest.raises(InputError, match=r"lacks required settings \['lr'\]"):
        EngineConfig.from_dict({"output_dir": "o", "batch_size": 2, "epochs": 1})
    with pytest.raises(InputError, match=r"unknown top-level experiment keys \['trainer'\]"):
        read_experiment({"engine": BASE, "trainer": {}})
    with pytest.raises(InputError, match="lacks its 'engine' section"):
        read_experiment({"task": {}})


def test_poly_schedule_matches_the_formula():
    config = EngineConfig.from_dict(BASE)
    assert lr_at(0, 100, config) == pytest.approx(1e-3)
    assert lr_at(50, 100, config) == pytest.approx(1e-3 * 0.5 ** 0.9)
    assert lr_at(99, 100, config) == pytest.approx(1e-3 * 0.01 ** 0.9)
    fssam = config.replace(poly_offset=1)  # the FSSAM code's (t + 1) / T: the last step runs at 0
    assert lr_at(0, 100, fssam) == pytest.approx(1e-3 * 0.99 ** 0.9)
    assert lr_at(99, 100, fssam) == 0.0
    assert lr_at(10, 100, config.replace(schedule="constant")) == 1e-3


def test_warmup_then_poly():
    config = EngineConfig.from_dict({**BASE, "lr": 1e-4, "warmup_iterations": 10, "warmup_factor": 1e-3})
    assert lr_at(0, 100, config) == pytest.approx(1e-4 * 1e-3)
    assert lr_at(5, 100, config) == pytest.approx(1e-4 * 0.95 ** 0.9 * (1e-3 + (1 - 1e-3) * 0.5))
    assert lr_at(10, 100, config) == pytest.approx(1e-4 * 0.9 ** 0.9)
    floored = config.replace(min_lr=1e-6)
    assert lr_at(60, 100, floored) == pytest.approx(1e-6 + (1e-4 - 1e-6) * 0.4 ** 0.9)
    assert all(math.isfinite(lr_at(step, 100, config)) for step in range(100))


def test_head_lookup_errors(monkeypatch):
    with pytest.raises(InputError, match="unknown head 'segment-everything'.*known heads"):
        task_factory("segment-everything")
    monkeypatch.setitem(task_module.HEADS, "absent", "samkit.no_such_head.task:build_task")
    with pytest.raises(InputError, match=r"head 'absent' has no training task .*samkit\.no_such_head\.task"):
        task_factory("absent")
    monkeypatch.setitem(task_module.HEADS, "nofactory", "samkit.engine.toy:no_factory")
    with pytest.raises(InputError, match="defines no task factory 'no_factory'"):
        task_factory("nofactory")
    assert type(build_task("toy", {"size": 8})).__name__ == "ToyTask"


def test_check_task_names_missing_methods():
    class HalfTask:
        def build_model(self):
            return None

    with pytest.raises(InputError, match=r"HalfTask is not a samkit.engine Task: it lacks \['train_dataset'"):
        check_task(HalfTask())
    with pytest.raises(InputError, match=r"unknown toy task settings \['colour'\]"):
        build_task("toy", {"colour": "red"})
