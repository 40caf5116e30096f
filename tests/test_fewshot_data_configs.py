"""The FSSAM recipes under configs/fewshot: one per official dataset x fold x backbone x shots, in the
engine's experiment format (``engine:`` + ``task:``), with the official hyper-parameters."""

from pathlib import Path

from samkit.engine.config import read_experiment
from samkit.fewshot.task import resolve_settings

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "fewshot"


def test_one_recipe_per_official_configuration():
    seen = set()
    for path in sorted(CONFIGS.glob("*.yaml")):
        if path.stem.startswith("synthetic"):
            continue
        experiment = read_experiment(path)  # unknown engine keys would raise here
        engine, task = experiment.engine, resolve_settings(experiment.task)  # and unknown task keys here
        seen.add((task["dataset"], task["fold"], task["backbone"], task["shots"]))
        assert (task["val_episodes"], task["val_seed"], task["val_loader_workers"]) == (1000, 321, 32)
        assert (engine.lr, engine.weight_decay, engine.schedule, engine.poly_power, engine.poly_offset) == (
            1e-3, 0.0, "poly", 0.9, 1
        )
        assert (engine.batch_size, engine.seed, engine.best_metric, engine.warmup_iterations) == (8, 321, "miou", 0)
        assert engine.find_unused_parameters and engine.iterations is None
        assert Path(engine.output_dir).name == path.stem
        pascal = task["dataset"] == "pascal"
        assert engine.epochs == (300 if pascal else 75)
        # official: stop_interval 100 / 25; mid-epoch validation when epochs <= 100 or epoch > 100
        assert engine.early_stop_epochs == (100 if pascal else 25)
        assert (engine.eval_every_epochs, engine.eval_mid_epoch_from) == (1, 101 if pascal else 0)
        assert tuple(task["scale"]) == ((0.9, 1.1) if pascal else (0.8, 1.25))
        assert task["lists"] == ("official" if pascal else "generate")
        size = task["backbone"].removeprefix("sam2-hiera-").replace("-", "_")
        assert task["backbone_checkpoint"] == f"sam2_hiera_{size}.pt"
        assert (task["num_refine"], task["official_compat"], task["image_size"]) == (3, False, 512)
    expected = {
        ("pascal", k, b, s)
        for k in range(4)
        for b, s in (
            ("sam2-hiera-small", 1),
            ("sam2-hiera-small", 5),
            ("sam2-hiera-base-plus", 1),
            ("sam2-hiera-large", 1),
        )
    }
    expected |= {("coco", k, "sam2-hiera-small", s) for k in range(4) for s in (1, 5)}
    assert seen == expected
