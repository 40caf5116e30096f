"""ReferSAM on samkit.engine: settings, protocol, one step, sharded evaluation, train -> eval, resume, learning."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import Crash, crash_at

from samkit import InputError
from samkit.cli import build_parser
from samkit.cli import main as engine_cli
from samkit.engine import evaluate, read_experiment, train
from samkit.engine.freezing import apply_freeze
from samkit.engine.state import load_training_checkpoint
from samkit.engine.task import Task, build_task
from samkit.metrics.referring import ReferringMetrics
from samkit.referring.data.synthetic import COLOURS, synthetic_sample, write_refer_layout
from samkit.referring.task import ReferringTask, collate

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs" / "referring"
TINY_TEXT = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
"""A random 1-layer BERT with MiniLM's tokenizer and vocabulary: the fast tests' text encoder."""
LEARNING_MARGIN = 0.1
"""How far above the best text-blind oIoU / mIoU the trained tiny model must score (fractions in [0, 1]).
Measured with synthetic_tiny.yaml (seed 0, 400 steps) on its 128 held-out images: oIoU 0.492 / mIoU 0.537
(Prec@0.5 0.664) against the best text-blind 0.334 (union) / 0.383 (always the middle object)."""
LEARNING_KEYS = ("oIoU", "mIoU")


def _task(**model):
    return {
        "model": {"backbone": "tiny-sam", "text_encoder": "minilm", "text_pretrained": False,
                  "text_overrides": dict(TINY_TEXT), "text_max_length": 8, "image_size": 64, **model},
        "data": {"dataset": "synthetic", "train_samples": 8, "val_samples": 6},
        "loss": {"num_points": 256},
    }


def _config(out, task=None, **engine):
    settings = {"output_dir": str(out), "iterations": 2, "batch_size": 2, "eval_batch_size": 3, "lr": 1e-3,
                "weight_decay": 0.01, "clip_grad_norm": 1.0, "eval_every_epochs": None, "progress": False,
                "best_metric": "oIoU", "device": "cpu", **engine}
    return {"engine": settings, "task": task or _task()}


# ---- settings and configs ------------------------------------------------------------------------
@pytest.mark.parametrize(("change", "message"), [
    ({"optimizer": {}}, "unknown referring task sections"),
    ({"model": {"backbone": "sam-vit-q"}}, "backbone"),
    ({"model": {"image_size": 100}}, "multiple of 32"),
    ({"model": {"img_size": 64}}, "unknown task.model settings"),
    ({"model": {"text_overrides": {"hidden_size": 8}}}, "text_pretrained: false"),
    ({"data": {"dataset": "refclef"}}, "refclef"),
    ({"data": {"dataset": "refcoco"}}, "task.data.root"),
    ({"data": {"dataset": "synthetic"}, "eval": {"space": "native"}}, "task.eval.space"),
])
def test_bad_settings_are_input_errors(change, message):
    with pytest.raises(InputError, match=message):
        ReferringTask(change)


def test_the_task_satisfies_the_engine_protocol():
    task = build_task("referring", _task())
    assert isinstance(task, Task) and isinstance(task, ReferringTask)
    assert task.collate is collate and callable(task.load_weights)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_referring_config_parses_for_the_engine_and_the_task(path):
    experiment = read_experiment(path)
    settings = ReferringTask(experiment.task).settings
    args = build_parser().parse_args(["train", "referring", "--config", str(path)])
    assert (args.head, args.config) == ("referring", str(path))
    if path.stem == "synthetic_tiny":
        assert settings["model"]["backbone"] == "tiny-sam" and settings["data"]["dataset"] == "synthetic"
        return
    engine = experiment.engine
    assert (engine.lr, engine.weight_decay, engine.clip_grad_norm) == (1e-4, 1e-2, 1.0)
    assert (engine.schedule, engine.poly_power, engine.warmup_iterations, engine.warmup_factor) == ("poly", 0.9, 1500, 1e-3)
    assert engine.best_metric == "oIoU" and engine.find_unused_parameters and engine.epochs == 50
    assert settings["model"]["image_size"] == 448 and settings["model"]["text_max_length"] == 20
    assert settings["loss"]["num_points"] == 112 * 112 and settings["eval"]["space"] == "original"


def test_frozen_modules_follow_the_text_encoder_kind():
    task = ReferringTask(_task(frozen=["vl_adapter.vis_model"]))

    class Clip(torch.nn.Module):
        using_clip = True

    class Bert(torch.nn.Module):
        using_clip = False

    assert task.frozen_modules(Clip()) == ["text_encoder", "vl_adapter.vis_model"]
    assert task.frozen_modules(Bert()) == ["vl_adapter.vis_model"]


# ---- data, one step, evaluation -------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny():
    """(task, model built with seed 0)."""
    task = ReferringTask(_task(frozen=["vl_adapter.vis_model.patch_embed"]))
    torch.manual_seed(0)
    return task, task.build_model()


def test_items_and_batches(tiny):
    task, _ = tiny
    train_set, val_set = task.train_dataset(), task.val_dataset()
    assert (len(train_set), len(val_set)) == (8, 6)
    item = train_set[3]
    sample = synthetic_sample(3, 64, 0)
    assert item["image"].shape == (3, 64, 64) and item["input_ids"].shape == item["attention_mask"].shape == (8,)
    assert torch.equal(item["mask"], torch.from_numpy(sample.mask))  # same size: the nearest resize is the identity
    sentences = {tuple(task.tokenizer([s])[0][0].tolist()) for s in sample.sentences}
    assert tuple(item["input_ids"].tolist()) in sentences
    held_out = synthetic_sample(2, 64, 1)  # validation uses data.seed + 1 and sentence index mod count
    expected = task.tokenizer([held_out.sentences[2 % len(held_out.sentences)]])[0][0]
    assert torch.equal(val_set[2]["input_ids"], expected)
    assert not np.array_equal(held_out.image, sample.image)
    batch = collate([train_set[0], train_set[1]])
    assert batch["image"].shape == (2, 3, 64, 64) and batch["mask"].shape == (2, 64, 64)
    assert batch["no_target"].tolist() == [False, False]
    ragged = collate([{**item, "mask": torch.zeros(5, 7, dtype=torch.uint8)}, item])
    assert isinstance(ragged["mask"], list) and ragged["mask"][0].shape == (5, 7)


def test_one_training_step_changes_only_trainable_parameters(tiny):
    task, model = tiny
    model = copy.deepcopy(model)
    plan = apply_freeze(model, task)
    assert plan.frozen_roots == ("vl_adapter.vis_model.patch_embed",)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.01)
    train_set = task.train_dataset()
    model.train()
    torch.manual_seed(1)
    loss, logs = task.training_step(model, collate([train_set[0], train_set[1]]))
    assert sorted(logs) == ["loss_dice", "loss_dice_aux", "loss_mask", "loss_mask_aux"]
    assert float(loss.detach()) == pytest.approx(sum(float(v) for v in logs.values()), rel=1e-6)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    optimizer.step()
    after = model.state_dict()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed <= set(grads) <= trainable
    # a parameter with a gradient stays put only when its gradient and value are zero (AdamW's update is then 0),
    # e.g. the injector's query-norm bias, which reaches the loss only through zero-initialised MSDA projections
    for name in set(grads) - changed:
        assert not grads[name].any() and not before[name].any(), name
    assert not any(name.startswith("vl_adapter.vis_model.patch_embed.") for name in changed)
    for prefix in ("text_encoder.encoder.", "vl_adapter.vis_model.blocks.", "vl_adapter.interactions.",
                   "sam_mask_decoder.transformer.", "mask_embedding.", "sparse_embedding."):
        assert any(name.startswith(prefix) for name in changed), prefix


def test_eval_statistics_of_two_shards_sum_to_the_single_pass(tiny):
    task, model = tiny
    model.eval()
    val_set = task.val_dataset()
    items = [val_set[i] for i in range(len(val_set))]
    with torch.no_grad():
        whole = task.eval_step(model, collate(items))["referring"]
        shards = [task.eval_step(model, collate(items[i:i + 2]))["referring"] for i in (0, 2, 4)]
        single = [task.eval_step(model, collate([item]))["referring"] for item in items]
        pred, _ = model(*(collate(items)[k] for k in ("image", "input_ids", "attention_mask")))
    first_half, second_half = shards[0] + shards[1], shards[2]
    assert torch.allclose(first_half + second_half, whole, rtol=0, atol=1e-12)
    assert torch.allclose(sum(single), whole, rtol=0, atol=1e-12)
    reference = ReferringMetrics()  # by hand: threshold the logits at 0 at 64 px (original size = input size)
    masks = torch.stack([item["mask"] for item in items])
    reference.update((pred >= 0).numpy(), masks.numpy(), [False] * len(items))
    metrics = task.compute_metrics({"referring": whole})
    expected = {name: value for name, value in reference.compute().items() if value is not None}
    assert metrics == pytest.approx(expected, abs=1e-12)
    inter = ((pred >= 0) & masks.bool()).flatten(1).sum(1).double()
    union = ((pred >= 0) | masks.bool()).flatten(1).sum(1).double()
    assert metrics["oIoU"] == pytest.approx(float(inter.sum() / union.sum()), abs=1e-12)
    assert metrics["num_samples"] == 6 and "N-acc" not in metrics  # undefined without no-target samples


def test_no_target_samples_give_grefcoco_and_refzom_metrics(tiny):
    _, model = tiny
    settings = _task()
    settings["data"].update(no_target_ratio=0.5, val_samples=8)
    no_target_task = ReferringTask(settings)
    model.eval()
    items = [no_target_task.val_dataset()[i] for i in range(8)]
    flags = [item["no_target"] for item in items]
    assert any(flags) and not all(flags)
    with torch.no_grad():
        metrics = no_target_task.compute_metrics(no_target_task.eval_step(model, collate(items)))
    assert metrics["num_no_target"] == sum(flags) and metrics["Acc"] == metrics["N-acc"]
    assert {"cIoU", "gIoU", "T-acc"} <= set(metrics)


@pytest.mark.parametrize("dataset", ["refcoco", "grefcoco", "ref-zom"])
def test_standard_layouts_train_per_referent_and_evaluate_per_expression_at_original_size(tmp_path, tiny, dataset):
    _, model = tiny
    samples = [synthetic_sample(i, 48, 5, no_target_ratio=0.0 if dataset == "refcoco" else 0.4) for i in range(6)]
    write_refer_layout(tmp_path, samples, ["train"] * 3 + ["val"] * 3, dataset=dataset)
    settings = _task()
    settings["data"] = {"dataset": dataset, "root": str(tmp_path), "val_split": "val"}
    task = ReferringTask(settings)
    train_set, val_set = task.train_dataset(), task.val_dataset()
    assert len(train_set) == 3 and len(val_set) == sum(len(s.sentences) for s in samples[3:])
    assert train_set[0]["image"].shape == (3, 64, 64) and train_set[0]["mask"].shape == (64, 64)
    items = [val_set[i] for i in range(len(val_set))]
    assert all(item["mask"].shape == (48, 48) for item in items)  # evaluated at the original resolution
    assert [item["no_target"] for item in items] == [s.no_target for s in samples[3:] for _ in s.sentences]
    model.eval()
    with torch.no_grad():
        metrics = task.compute_metrics(task.eval_step(model, collate(items)))
    assert metrics["num_samples"] == len(items) and metrics["num_no_target"] == sum(i["no_target"] for i in items)


# ---- the engine end to end ------------------------------------------------------------------------
def test_cli_train_then_evaluate_writes_results(tmp_path, capsys):
    config = _config(tmp_path / "run", iterations=2, eval_every_iterations=2)
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(config))
    assert engine_cli(["train", "referring", "--config", str(path)]) == 0
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["steps"] == 2 and results["best"]["step"] == 2
    assert set(trained["metrics"]) >= {"oIoU", "mIoU", "Prec@0.5", "cIoU", "gIoU", "T-acc"}
    assert engine_cli(["eval", "referring", "--config", str(path), "--checkpoint", str(tmp_path / "run" / "best.pt"),
                       "--out", str(tmp_path / "eval.json")]) == 0
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    assert evaluated["metrics"] == pytest.approx(results["metrics"], abs=1e-12)
    assert evaluated["samples"] == 6 and len(evaluated["totals"]["referring"]) == len(ReferringMetrics().state())
    other = tmp_path / "sam_only.pt"
    torch.save({"image_encoder.patch_embed.proj.weight": torch.zeros(32, 3, 16, 16)}, other)
    with pytest.raises(InputError, match="refersam"):
        evaluate(config, head="referring", checkpoint=other)


def test_resume_after_a_crash_reproduces_the_uninterrupted_run(tmp_path):
    def config(out):
        return _config(out, iterations=4, eval_every_iterations=2, checkpoint_every_iterations=1)

    reference = train(config(tmp_path / "ref"), ReferringTask(_task()))
    with pytest.raises(Crash):
        train(config(tmp_path / "run"), crash_at(ReferringTask(_task()), 3))
    assert load_training_checkpoint(tmp_path / "run" / "last.pt")["step"] == 2
    resumed = train(config(tmp_path / "run"), ReferringTask(_task()), resume=True)
    assert resumed.steps == reference.steps == 4
    expected, got = reference.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(expected[key], got[key]) for key in expected)
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == (tmp_path / "ref" / "metrics.jsonl").read_text()


@pytest.mark.slow
def test_resume_after_sigkill_reproduces_the_uninterrupted_run(tmp_path):
    """A real SIGKILL of a `samkit train` process once last.pt exists; --resume finishes the run."""
    def write(out):
        path = tmp_path / f"{out}.yaml"
        path.write_text(yaml.safe_dump(_config(tmp_path / out, iterations=6, eval_every_iterations=3,
                                               checkpoint_every_iterations=1)))
        return str(path)

    command = [sys.executable, "-m", "samkit.cli", "train", "referring", "--config"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    subprocess.run([*command, write("ref")], check=True, env=env, capture_output=True)
    process = subprocess.Popen([*command, write("run")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tmp_path / "run" / "last.pt"
    while not last.exists() and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = load_training_checkpoint(last)["step"]
    assert killed_at < 6, "the run finished before it could be killed"
    subprocess.run([*command, write("run"), "--resume"], check=True, env=env, capture_output=True)
    expected = load_training_checkpoint(tmp_path / "ref" / "last.pt")
    got = load_training_checkpoint(last)
    assert got["step"] == expected["step"] == 6
    assert all(torch.equal(expected["model"][key], got["model"][key]) for key in expected["model"])
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == (tmp_path / "ref" / "metrics.jsonl").read_text()


# ---- learning ------------------------------------------------------------------------------------
def _objects(image: np.ndarray) -> np.ndarray:
    """(3, H, W) masks of the left / middle / right object of a generated image (pixels of an exact shape colour)."""
    painted = np.zeros(image.shape[:2], dtype=bool)
    for colour in COLOURS.values():
        painted |= (image == np.array(colour, dtype=np.uint8)).all(-1)
    width = image.shape[1]
    columns = np.arange(width)
    return np.stack([painted & ((columns >= width * k / 3) & (columns < width * (k + 1) / 3))[None] for k in range(3)])


def text_blind_baselines(count: int, size: int, seed: int) -> dict[str, dict[str, float]]:
    """oIoU / mIoU of every prediction that ignores the text: each fixed set of objects (left, middle, right,
    any two, all three = the union) and the largest object, on the generated held-out images.

    For disjoint objects and a target drawn uniformly among three, no text-blind prediction P has an expected
    IoU above 1/3: sum_k |P & O_k| / |P | O_k| <= sum_k |P & O_k| / |P| <= 1.
    """
    choices = {"left": [0], "middle": [1], "right": [2], "left+middle": [0, 1], "left+right": [0, 2],
               "middle+right": [1, 2], "union": [0, 1, 2]}
    scores = {name: ReferringMetrics() for name in [*choices, "largest"]}
    for index in range(count):
        sample = synthetic_sample(index, size, seed)
        objects = _objects(sample.image)
        assert any(np.array_equal(sample.mask.astype(bool), o) for o in objects)  # the target is one whole object
        for name, slots in choices.items():
            scores[name].update(objects[slots].any(0), sample.mask)
        scores["largest"].update(objects[int(objects.sum((1, 2)).argmax())], sample.mask)
    return {name: {key: metrics.compute()[key] for key in LEARNING_KEYS} for name, metrics in scores.items()}


@pytest.mark.slow
def test_tiny_refersam_learns_the_generated_referring_task_beyond_any_text_blind_baseline(tmp_path):
    """The tiny ReferSAM (2-block SAM ViT, packaged MiniLM text) trained on the generated task, scored on
    held-out images, against the best text-blind prediction on the same images."""
    experiment = yaml.safe_load((CONFIGS / "synthetic_tiny.yaml").read_text())
    experiment["engine"].update(output_dir=str(tmp_path / "run"), progress=False)
    result = train(experiment, head="referring")
    data, size = experiment["task"]["data"], experiment["task"]["model"]["image_size"]
    baselines = text_blind_baselines(data["val_samples"], size, data["seed"] + 1)
    best_blind = {key: max(scores[key] for scores in baselines.values()) for key in LEARNING_KEYS}
    print(json.dumps({"trained": result.metrics, "text_blind": baselines}))
    assert all(0.25 < best_blind[key] < 0.45 for key in LEARNING_KEYS)  # about 1/3, up to sampling noise
    assert result.metrics["oIoU"] > best_blind["oIoU"] + LEARNING_MARGIN
    assert result.metrics["mIoU"] > best_blind["mIoU"] + LEARNING_MARGIN
