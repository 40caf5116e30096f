"""FSSAM on samkit.engine: the Task, its loss, the episode-keyed prior cache, sharded evaluation, the
train -> checkpoint -> evaluate round trip through the engine CLI, and the learning test."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from samkit.cli import main as engine_cli
from samkit.engine import Task, check_task, evaluate, train
from samkit.engine.sampling import eval_shard
from samkit.engine.task import build_task as engine_build_task
from samkit.errors import InputError
from samkit.fewshot.loss import dice_loss
from samkit.fewshot.priorcache import PriorCache, episode_key, weights_fingerprint
from samkit.fewshot.task import TRAINABLE, FewShotTask, build_task, collate
from samkit.metrics.fewshot import FewShotIoU

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SHIPPED = Path(__file__).resolve().parents[1] / "configs" / "fewshot" / "synthetic_tiny.yaml"
SYNTHETIC = {"num_classes": 8, "num_folds": 4, "images_per_class": 4, "size": 128}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("synthetic")


def settings(data, **changes):
    base = {"dataset": "synthetic", "root": str(data), "synthetic": SYNTHETIC, "backbone": "tiny",
            "val_episodes": 6, "val_loader_workers": 0}
    return {**base, **changes}


def engine_config(out, **changes):
    base = {"output_dir": str(out), "iterations": 1, "batch_size": 2, "lr": 1e-3, "poly_offset": 1,
            "progress": False, "best_metric": "miou", "device": "cpu"}
    return {**base, **changes}


# ---- the Task -----------------------------------------------------------------------------------

def test_task_satisfies_the_protocol_and_is_registered(data_root):
    task = engine_build_task("fewshot", settings(data_root))
    assert isinstance(task, FewShotTask) and isinstance(task, Task) and check_task(task) is task
    assert task.trainable_modules(None) == ("sam2.sam_mask_decoder", "sam2.memory_encoder", "sam2.memory_attention")
    assert task.split().novel == (1, 2) and task.split().base == (3, 4, 5, 6, 7, 8)


@pytest.mark.parametrize("bad, words", [
    ({"learning_rate": 1}, "unknown fewshot task settings"),
    ({"dataset": "voc"}, "task.dataset"),
    ({"root": None}, "task.root"),
    ({"shots": 0}, "task.shots"),
    ({"scale": [1.2, 0.9]}, "task.scale"),
    ({"lists": "official"}, "generates its lists"),
])
def test_bad_settings_are_named(data_root, bad, words):
    with pytest.raises(InputError, match=words):
        build_task(settings(data_root, **bad)).lists("train")


def test_pascal_root_without_its_folders_is_named(tmp_path):
    (tmp_path / "JPEGImages").mkdir()
    with pytest.raises(InputError, match="SegmentationClassAug"):
        build_task({"dataset": "pascal", "root": str(tmp_path)}).train_dataset()


def test_datasets_follow_the_fold(data_root):
    task = build_task(settings(data_root, shots=2))
    train_set, val_set = task.train_dataset(), task.val_dataset()
    item = train_set[0]
    assert item["query"].shape == (3, 128, 128) and item["support_images"].shape == (2, 3, 128, 128)
    assert item["class_id"] in task.split().base
    assert set(item["support_masks"].unique().tolist()) <= {0, 1, 255}
    assert len(val_set) == 6
    episode = val_set[0]
    assert episode["class_id"] in task.split().novel and episode["raw_label"].shape == (128, 128)
    description = json.loads(episode["episode"])
    assert description["class"] == episode["class_id"] and len(description["supports"]) == 2
    batch = collate([val_set[0], val_set[1]])
    assert batch["query"].shape == (2, 3, 128, 128) and isinstance(batch["raw_label"], list)
    assert batch["class_index"].tolist() == [val_set[0]["class_index"], val_set[1]["class_index"]]


def test_dice_loss_matches_a_hand_computed_value():
    logits = torch.tensor([[[0.0, 2.0], [-1.0, 0.5]]])
    labels = torch.tensor([[[1, 1], [0, 255]]])  # 255 counts as background
    p = torch.sigmoid(logits).flatten()
    t = torch.tensor([1.0, 1.0, 0.0, 0.0])
    expected = 1 - 2 * (p * t).sum() / ((p**2).sum() + (t**2).sum())
    assert torch.allclose(dice_loss(logits, labels), expected)
    # batch mean of per-sample losses; an empty target and an all-negative prediction give 1
    empty = torch.full((1, 2, 2), -50.0), torch.zeros(1, 2, 2, dtype=torch.long)
    pair = dice_loss(torch.cat([logits, empty[0]]), torch.cat([labels, empty[1]]))
    assert torch.allclose(pair, (expected + 1) / 2)


# ---- training -----------------------------------------------------------------------------------

def test_one_training_step_changes_only_the_three_trainable_modules(data_root, tmp_path):
    task = build_task(settings(data_root, val_episodes=2))
    before = {k: v.clone() for k, v in task.build_model().state_dict().items()}
    engine = engine_config(tmp_path / "run", best_metric=None, schedule="constant")  # poly would give lr 0 to a 1-step run
    result = train({"engine": engine, "task": task.settings}, task)
    after = result.model.state_dict()
    changed = {key for key in before if not torch.equal(before[key], after[key])}
    assert changed and all(key.startswith(TRAINABLE) for key in changed)
    for module in TRAINABLE:  # each of the three received a gradient
        assert any(key.startswith(module) for key in changed), module
    frozen = [name for name, p in result.model.named_parameters() if not p.requires_grad]
    assert {"sam2.maskmem_tpos_enc", "sam2.no_obj_ptr", "dino.pos_embed",
            "sam2.image_encoder.trunk.pos_embed", "sam2.obj_ptr_proj.layers.0.weight"} <= set(frozen)
    assert all(name.startswith(TRAINABLE) for name, p in result.model.named_parameters() if p.requires_grad)


# ---- evaluation ---------------------------------------------------------------------------------

def run_eval(task, model, indices, dataset, logits=None):
    """Summed eval_step statistics over ``indices`` (batch 1); ``logits`` collects each episode's logits."""
    predict = task.predict
    if logits is not None:
        def recording(model, batch):
            logits.append(predict(model, batch))
            return logits[-1]

        task.predict = recording
    totals = {}
    for index in indices:
        for name, value in task.eval_step(model, collate([dataset[index]])).items():
            totals[name] = totals.get(name, 0) + value
    task.predict = predict
    return totals


def test_eval_statistics_of_two_shards_sum_to_one_pass(data_root):
    task = build_task(settings(data_root, val_episodes=4))
    model = task.build_model().eval()
    dataset = task.val_dataset()
    logits = []
    with torch.no_grad():
        whole = run_eval(task, model, list(range(len(dataset))), dataset, logits)
        shards = [run_eval(task, model, eval_shard(len(dataset), rank, 2), dataset) for rank in (0, 1)]
    summed = {name: shards[0][name] + shards[1][name] for name in whole}
    assert torch.equal(summed["iou_state"], whole["iou_state"]) and int(whole["episodes"]) == 4
    metrics = task.compute_metrics(whole)
    meter = FewShotIoU(2)  # the official protocol applied episode by episode to the same logits
    for index, episode_logits in enumerate(logits):
        item = dataset[index]
        meter.update(episode_logits[0], item["raw_label"], item["class_index"])
    scores = meter.compute()
    assert metrics["miou"] == scores.miou and metrics["fbiou"] == scores.fbiou and metrics["piou"] == scores.piou
    assert (metrics["iou_class_1"], metrics["iou_class_2"]) == scores.class_iou


def test_cached_priors_give_the_same_logits_and_are_keyed_by_episode(data_root, tmp_path):
    cached_task = build_task(settings(data_root, prior_cache=str(tmp_path / "priors")))
    plain_task = build_task(settings(data_root))
    model = plain_task.build_model().eval()
    batch = collate([plain_task.val_dataset()[i] for i in (0, 1)])
    with torch.no_grad():
        plain = plain_task.predict(model, batch)
        first = cached_task.predict(model, batch)  # computes and stores
        assert len(cached_task.cache) == 2
        # a poisoned cache entry proves the second pass reads the priors instead of running DINOv2
        key = cached_task._priors_key(model, batch["episode"][0])
        stored = cached_task.cache.get(key)
        second = cached_task.predict(model, batch)
        cached_task.cache.put(key, torch.zeros_like(stored))
        poisoned = cached_task.predict(model, batch)
    assert torch.equal(plain, first) and torch.equal(plain, second)
    assert not torch.equal(poisoned[0], plain[0]) and torch.equal(poisoned[1], plain[1])
    assert stored.shape == (1, 2, 128, 128) and 0 <= float(stored.min()) and float(stored.max()) <= 1
    # other episodes (another seed) or other DINOv2 weights never hit these entries
    other = json.loads(batch["episode"][0]) | {"supports": [["images/x.png", "labels/x.png"]]}
    assert episode_key(other, "f") != episode_key(json.loads(batch["episode"][0]), "f")
    fingerprint = weights_fingerprint(model.dino)
    changed = build_task(settings(data_root, model_seed=1)).build_model()
    assert weights_fingerprint(changed.dino) != fingerprint
    assert cached_task._priors_key(changed, batch["episode"][0]) != key
    memory = PriorCache("memory")
    memory.put("k", stored)
    assert torch.equal(memory.get("k"), stored) and memory.get("missing") is None


def test_train_checkpoint_evaluate_through_the_engine_cli(data_root, tmp_path):
    raw = yaml.safe_load(SHIPPED.read_text())
    raw["engine"].update(output_dir=str(tmp_path / "run"), iterations=2, eval_every_iterations=1, progress=False)
    raw["task"].update(root=str(data_root), val_episodes=2)
    assert raw["task"]["synthetic"] == SYNTHETIC  # the shipped tiny config is the one tested here
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(raw))
    assert engine_cli(["train", "fewshot", "--config", str(config)]) == 0
    run = tmp_path / "run"
    best = json.loads((run / "results.json").read_text())["best"]
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    val = [record for record in log if record["kind"] == "val"]
    assert [record["step"] for record in val] == [1, 2]
    assert best["value"] == max(record["miou"] for record in val)
    out = tmp_path / "eval" / "results.json"
    assert engine_cli(["eval", "fewshot", "--config", str(config), "--checkpoint", str(run / "best.pt"),
                       "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["metrics"]["miou"] == best["value"] and results["metrics"]["episodes"] == 2
    assert sorted(p.name for p in out.parent.iterdir()) == ["results.json"]  # no temporary left behind
    # a failing evaluation (checkpoint of another head) leaves the previous results untouched
    other = tmp_path / "other.pt"
    torch.save({"model": {"stem.weight": torch.zeros(1)}}, other)
    assert engine_cli(["eval", "fewshot", "--config", str(config), "--checkpoint", str(other),
                       "--out", str(out)]) == 2
    assert json.loads(out.read_text()) == results
    with pytest.raises(InputError, match="not an FSSAM checkpoint"):
        evaluate(str(config), head="fewshot", checkpoint=other, out=out)


# ---- learning test ------------------------------------------------------------------------------

LEARN_STEPS = 150
LEARN_SYNTHETIC = {"num_classes": 8, "num_folds": 4, "images_per_class": 12, "size": 128}
CLEAR_MARGIN = 0.15


def copy_support_mask_scores(dataset):
    """The baseline that predicts the support mask itself at the query (1-shot)."""
    meter = FewShotIoU(2)
    for index in range(len(dataset)):
        item = dataset[index]
        support = (item["support_masks"][0] == 1).float()[None, None]
        prediction = torch.nn.functional.interpolate(support, size=item["raw_label"].shape, mode="nearest")[0, 0]
        meter.update_prediction(prediction.bool(), item["raw_label"], item["class_index"])
    return meter.compute()


@pytest.mark.slow
def test_tiny_fssam_learns_held_out_classes(tmp_path):
    """Trained on base classes 3-8 only, the tiny FSSAM segments the novel classes 1-2 far better than
    before training and than copying the support mask (objects of a class look alike, but their
    shape, pose and place change)."""
    task_settings = {"dataset": "synthetic", "root": str(tmp_path / "data"), "synthetic": LEARN_SYNTHETIC,
                     "backbone": "tiny", "fold": 0, "val_episodes": 40, "val_loader_workers": 0,
                     "prior_cache": "memory"}
    config = {"engine": engine_config(tmp_path / "run", iterations=LEARN_STEPS, eval_every_epochs=None),
              "task": task_settings}
    task = build_task(task_settings)
    val_set = task.val_dataset()
    assert {val_set[i]["class_id"] for i in range(len(val_set))} == {1, 2}
    untrained = evaluate(config, task, out=tmp_path / "untrained.json")["metrics"]
    copy = copy_support_mask_scores(val_set)
    trained = train(config, task).metrics
    print(f"mIoU on held-out classes: trained {trained['miou']:.3f}, untrained {untrained['miou']:.3f}, "
          f"copy-the-support-mask {copy.miou:.3f}")
    assert trained["miou"] > max(untrained["miou"], copy.miou) + CLEAR_MARGIN
    assert trained["fbiou"] > max(untrained["fbiou"], copy.fbiou) + CLEAR_MARGIN
