"""Training on the toy task in one process: it learns, freezes, resumes bit for bit, keeps the best."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import Crash, crash_at

from samkit import InputError
from samkit.cli import main as engine_cli
from samkit.engine import evaluate, train
from samkit.engine.state import load_training_checkpoint
from samkit.engine.toy import ToyTask

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL_TASK = {"size": 16, "train_samples": 16, "val_samples": 4, "width": 4}


def _config(out, **engine):
    settings = {"output_dir": str(out), "batch_size": 4, "lr": 1e-2, "iterations": 22, "progress": False,
                "eval_every_epochs": 2, "checkpoint_every_iterations": 5, "log_every_iterations": 3,
                "best_metric": "iou", **engine}
    return {"engine": settings, "task": dict(SMALL_TASK)}


def test_learning_the_toy_task(tmp_path):
    config = _config(tmp_path / "run", iterations=80, eval_every_epochs=None, eval_every_iterations=40,
                     log_every_iterations=20, checkpoint_every_iterations=None)
    config["task"] = {"size": 20, "train_samples": 32, "val_samples": 8, "width": 8}
    untrained = evaluate(config, ToyTask(config["task"]))["metrics"]
    result = train(config, ToyTask(config["task"]))
    losses = [r["loss"] for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())
              if r["kind"] == "train"]
    assert losses[-1] < 0.3 * losses[0]
    assert result.metrics["iou"] > 0.8 and result.metrics["iou"] > untrained["iou"] + 0.5
    best = json.loads((tmp_path / "run" / "results.json").read_text())["best"]
    assert best["value"] >= result.metrics["iou"] and best["step"] in (40, 80)
    rescored = evaluate(config, ToyTask(config["task"]), checkpoint=tmp_path / "run" / "best.pt",
                        out=tmp_path / "eval.json")
    assert rescored["metrics"]["iou"] == pytest.approx(best["value"], abs=1e-12)
    assert json.loads((tmp_path / "eval.json").read_text())["totals"]["union"] == rescored["totals"]["union"].tolist()


def _val_steps(run_dir):
    records = map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
    return [record["step"] for record in records if record["kind"] == "val"]


def test_mid_epoch_validation_follows_the_official_rule(tmp_path):
    # 20 samples at batch 4: 5 steps per epoch; the official code validates after iteration
    # round(5 / 2) + 1 = 3 of each epoch (Python rounds 2.5 to 2), here from epoch 1 on; the last step always.
    task = dict(SMALL_TASK, train_samples=20)
    config = _config(tmp_path / "run", eval_every_epochs=None, eval_mid_epoch_from=1)
    config["task"] = task
    train(config, ToyTask(task))
    assert _val_steps(tmp_path / "run") == [8, 13, 18, 22]


class ScriptedMetricTask(ToyTask):
    """Validation ``iou`` read from ``values`` by validation count (the last value repeats)."""

    def __init__(self, values: list[float]) -> None:
        super().__init__(SMALL_TASK)
        self.values, self.validations = values, 0

    def compute_metrics(self, totals):
        value = self.values[min(self.validations, len(self.values) - 1)]
        self.validations += 1
        return {"iou": value}


def test_early_stop_after_epochs_without_a_better_metric(tmp_path):
    # 4 steps per epoch, validation at each epoch end (steps 4, 8, 12, ...): the best (0.3) comes at
    # step 8, end of epoch 1; epochs 2 and 3 bring nothing better, so epoch 4 never starts.
    config = _config(tmp_path / "run", iterations=None, epochs=10, eval_every_epochs=1, early_stop_epochs=2)
    result = train(config, ScriptedMetricTask([0.1, 0.3, 0.2, 0.25, 0.9]))
    assert result.steps == 16 and result.stopped_early
    assert result.best["value"] == 0.3 and result.best["step"] == 8
    assert _val_steps(tmp_path / "run") == [4, 8, 12, 16]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["stopped_early"] and results["steps"] == 16
    resumed = train(config, ScriptedMetricTask([0.0]), resume=True)
    assert resumed.steps == 16 and resumed.stopped_early
    without = train(_config(tmp_path / "full", iterations=None, epochs=10, eval_every_epochs=1),
                    ScriptedMetricTask([0.1, 0.3, 0.2, 0.25, 0.9]))
    assert without.steps == 40 and not without.stopped_early and without.best["value"] == 0.9


@pytest.mark.parametrize("step", [3, 8, 9, 12, 17, 22])
def test_resume_after_a_crash_reproduces_the_uninterrupted_run(tmp_path, step):
    reference = train(_config(tmp_path / "ref"), ToyTask(SMALL_TASK))
    with pytest.raises(Crash):
        train(_config(tmp_path / "run"), crash_at(ToyTask(SMALL_TASK), step))
    resumed = train(_config(tmp_path / "run"), ToyTask(SMALL_TASK), resume=True)
    assert resumed.steps == reference.steps == 22
    reference_state, resumed_state = reference.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(reference_state[key], resumed_state[key]) for key in reference_state)
    ref_ckpt = load_training_checkpoint(tmp_path / "ref" / "last.pt")
    run_ckpt = load_training_checkpoint(tmp_path / "run" / "last.pt")
    for ref_moments, run_moments in zip(ref_ckpt["optimizer"]["state"].values(), run_ckpt["optimizer"]["state"].values()):
        assert torch.equal(ref_moments["exp_avg_sq"], run_moments["exp_avg_sq"])
    assert run_ckpt["best"] == ref_ckpt["best"] and run_ckpt["metrics"] == ref_ckpt["metrics"]
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == (tmp_path / "ref" / "metrics.jsonl").read_text()


def test_an_existing_run_is_not_overwritten_and_settings_must_match(tmp_path):
    train(_config(tmp_path / "run", iterations=4), ToyTask(SMALL_TASK))
    with pytest.raises(InputError, match="already holds a training run"):
        train(_config(tmp_path / "run", iterations=4), ToyTask(SMALL_TASK))
    with pytest.raises(InputError, match=r"engine settings \['iterations', 'lr'\] differ"):
        train(_config(tmp_path / "run", iterations=8, lr=0.5), ToyTask(SMALL_TASK), resume=True)
    finished = train(_config(tmp_path / "run", iterations=4, workers=0), ToyTask(SMALL_TASK), resume=True)
    assert finished.steps == 4


def test_frozen_modules_keep_weights_and_batchnorm_statistics(tmp_path):
    task = ToyTask({**SMALL_TASK, "frozen": ["stem"], "batchnorm": True})
    torch.manual_seed(321)
    initial = task.build_model().state_dict()
    result = train(_config(tmp_path / "run", iterations=6), task)
    final = result.model.state_dict()
    stem_keys = [key for key in final if key.startswith("stem.")]
    assert "stem.1.running_mean" in stem_keys and "stem.1.num_batches_tracked" in stem_keys
    assert all(torch.equal(initial[key], final[key]) for key in stem_keys)
    assert not torch.equal(initial["head.weight"], final["head.weight"])
    optimizer = load_training_checkpoint(tmp_path / "run" / "last.pt")["optimizer"]
    trainable = [p for name, p in result.model.named_parameters() if not name.startswith("stem.")]
    assert len(optimizer["param_groups"][0]["params"]) == len(trainable)


def test_unknown_best_metric_and_frozen_everything_are_errors(tmp_path):
    with pytest.raises(InputError, match="engine.best_metric 'dice' is not among the validation metrics"):
        train(_config(tmp_path / "a", iterations=8, best_metric="dice"), ToyTask(SMALL_TASK))
    with pytest.raises(InputError, match="every parameter is frozen"):
        train(_config(tmp_path / "b"), ToyTask({**SMALL_TASK, "frozen": ["stem", "body", "head"]}))
    with pytest.raises(InputError, match="names modules the model does not have: \\['neck'\\]"):
        train(_config(tmp_path / "c"), ToyTask({**SMALL_TASK, "frozen": ["neck"]}))


def test_cli_train_and_eval(tmp_path, capsys):
    import yaml

    config_path = tmp_path / "toy.yaml"
    config_path.write_text(yaml.safe_dump(_config(tmp_path / "run", iterations=8)))
    assert engine_cli(["train", "toy", "--config", str(config_path)]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["steps"] == 8
    assert engine_cli(["eval", "toy", "--config", str(config_path), "--checkpoint",
                       str(tmp_path / "run" / "last.pt")]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics == json.loads((tmp_path / "run" / "eval_results.json").read_text())["metrics"]
    assert metrics["iou"] == pytest.approx(printed["metrics"]["iou"], abs=1e-12)
    assert engine_cli(["train", "nohead", "--config", str(config_path)]) == 2
    assert "unknown head 'nohead'" in capsys.readouterr().err
