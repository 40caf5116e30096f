"""The 24 FSSAM recipes under configs/fewshot: one per official dataset x fold x backbone x shots."""

from pathlib import Path

import yaml

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "fewshot"


def test_one_recipe_per_official_configuration():
    seen = set()
    for path in sorted(CONFIGS.glob("*.yaml")):
        cfg = yaml.safe_load(path.read_text())
        data, train, model = cfg["data"], cfg["train"], cfg["model"]
        seen.add((data["dataset"], data["fold"], model["backbone"], model["shots"]))
        assert (
            data["shots"] == model["shots"]
            and cfg["eval"]["episodes"] == 1000
            and cfg["eval"]["seeds"] == [321]
        )
        assert (train["lr"], train["weight_decay"], train["poly_power"], train["batch_size"]) == (
            1e-3,
            0.0,
            0.9,
            2,
        )
        pascal = data["dataset"] == "pascal"
        assert train["epochs"] == (300 if pascal else 75)
        assert data["scale"] == ([0.9, 1.1] if pascal else [0.8, 1.25])
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
