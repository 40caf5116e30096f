"""Real processes: 2 gloo ranks under torchrun equal 1 process, and a SIGKILLed run resumes bit for bit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from samkit.engine import evaluate, train
from samkit.engine.state import load_training_checkpoint
from samkit.engine.toy import ToyTask

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

ROOT = Path(__file__).resolve().parents[1]
TASK = {"size": 16, "train_samples": 24, "val_samples": 7, "width": 4}
TIMEOUT = 240
POLL_SECONDS = 0.05


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _write_config(path: Path, out: Path, task: dict, **engine) -> Path:
    settings = {"output_dir": str(out), "batch_size": 4, "lr": 1e-2, "iterations": 12, "progress": False,
                "eval_every_epochs": None, "log_every_iterations": 1, **engine}
    path.write_text(yaml.safe_dump({"engine": settings, "task": task}))
    return path


RANKS_SCRIPT = """
import sys
import torch
import torch.distributed as dist
from samkit.engine import evaluate, train
torch.set_num_threads(1)
dist.init_process_group("gloo")  # one group for both calls; the engine joins it instead of making its own
train(sys.argv[1], head="toy")
evaluate(sys.argv[2], head="toy", checkpoint=sys.argv[3], out=sys.argv[4])
dist.destroy_process_group()
"""


def test_two_gloo_processes_match_one_process(tmp_path):
    single_config = _write_config(tmp_path / "one.yaml", tmp_path / "one", TASK)
    double_config = _write_config(tmp_path / "two.yaml", tmp_path / "two", TASK)
    single = train(single_config, ToyTask(TASK))
    script = tmp_path / "ranks.py"
    script.write_text(RANKS_SCRIPT)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
               str(double_config), str(single_config), str(tmp_path / "one" / "last.pt"), str(tmp_path / "eval2.json")]
    completed = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]

    double = load_training_checkpoint(tmp_path / "two" / "last.pt")
    assert double["world_size"] == 2 and len(double["rng"]) == 2 and double["step"] == 12
    differences = {key: float((value - double["model"][key]).abs().max())
                   for key, value in single.model.state_dict().items()}
    assert max(differences.values()) < 1e-5, differences
    assert not torch.equal(single.model.state_dict()["head.weight"], ToyTask(TASK).build_model().head.weight)

    sharded = json.loads((tmp_path / "eval2.json").read_text())
    alone = evaluate(single_config, ToyTask(TASK), checkpoint=tmp_path / "one" / "last.pt", out=tmp_path / "eval1.json")
    assert sharded["world_size"] == 2 and alone["world_size"] == 1
    assert sharded["totals"]["intersection"] == alone["totals"]["intersection"].tolist()
    assert sharded["totals"]["union"] == alone["totals"]["union"].tolist()
    assert sharded["totals"]["samples"] == 7
    assert sharded["metrics"] == json.loads((tmp_path / "eval1.json").read_text())["metrics"]


def _records(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines[:-1]]  # the last line may still be being written


def test_sigkill_then_resume_is_bit_for_bit(tmp_path):
    task = {**TASK, "step_delay": 0.05}
    engine = {"iterations": 40, "checkpoint_every_iterations": 5, "eval_every_iterations": 8, "best_metric": "iou"}
    config = _write_config(tmp_path / "run.yaml", tmp_path / "run", task, **engine)
    process = subprocess.Popen([sys.executable, "-m", "samkit.cli", "train", "toy", "--config", str(config)],
                               env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + TIMEOUT
    killed_after = None
    while time.monotonic() < deadline and process.poll() is None:
        steps = [record["step"] for record in _records(tmp_path / "run" / "metrics.jsonl")]
        if steps and max(steps) >= 13:  # checkpoints at 5 and 10 (and evals at 8) are behind it
            process.send_signal(signal.SIGKILL)
            killed_after = max(steps)
            break
        time.sleep(POLL_SECONDS)
    process.wait(timeout=TIMEOUT)
    assert killed_after is not None and process.returncode == -signal.SIGKILL, process.stderr.read()[-2000:]
    interrupted = load_training_checkpoint(tmp_path / "run" / "last.pt")
    assert 10 <= interrupted["step"] < 40

    resumed = train(config, ToyTask(task), resume=True)
    reference = train(_write_config(tmp_path / "ref.yaml", tmp_path / "ref", task, **engine), ToyTask(task))
    for key, value in reference.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert resumed.best == reference.best
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == (tmp_path / "ref" / "metrics.jsonl").read_text()
    best_run = torch.load(tmp_path / "run" / "best.pt", weights_only=True)["model"]
    best_ref = torch.load(tmp_path / "ref" / "best.pt", weights_only=True)["model"]
    assert all(torch.equal(best_run[key], best_ref[key]) for key in best_ref)
