"""The head benchmarks stay runnable: each one's quick mode runs end to end and reports every figure."""

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
pytestmark = pytest.mark.slow


def _run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], check=False, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_fewshot_benchmark_reports_stages_reuse_and_training():
    out = _run("fewshot.py", "--tiny", "--repeats", "1", "--threads", "1")
    for shots in (1, 5):
        episode = re.search(rf"{shots}-shot episode: ([\d.]+) s", out)
        assert episode and float(episode.group(1)) > 0
        reuse = re.search(rf"8 queries, {shots}-shot support: independent ([\d.]+) s; support reused ([\d.]+) s "
                          r"\(ratio ([\d.]+)\), reused \+ 4 queries per pass ([\d.]+) s", out)
        assert reuse, out
        independent, reused, ratio = (float(reuse.group(i)) for i in (1, 2, 3))
        assert ratio == pytest.approx(reused / independent, abs=0.006)
    assert re.search(r"training step, batch 2: [\d.]+ s, peak memory [\d.]+ GiB", out)


def test_referring_benchmark_compares_the_deformable_attention_formulations():
    report = json.loads(_run("referring.py", "--tiny", "--threads", "1"))
    assert [row["image_size"] for row in report["inference"]] == [64, 128]
    for row in report["inference"]:
        shares = [row[f"share_{part}"] for part in ("vit_blocks", "fusion", "deformable_attention", "decoder")]
        assert all(0 < share < 1 for share in shares) and sum(shares) < 1
        assert row["deformable_attention_speedup"] == pytest.approx(
            row["mmcv_formulation_deformable_attention_s"] / row["deformable_attention_s"])
        assert math.isfinite(row["mmcv_formulation_s_per_image"]) and row["mmcv_formulation_s_per_image"] > 0
    runs = report["training_batch2"]
    assert [run["activation_checkpointing"] for run in runs] == [False, True]
    assert all(run["batch"] == 2 and run["step_s"] > 0 and run["peak_mib"] > 0 for run in runs)


def test_msda_benchmark_times_every_formulation():
    rows = [json.loads(line) for line in _run("msda.py", "--tiny").splitlines()]
    assert [row["site"] for row in rows] == ["injector", "extractor"]
    for row in rows:
        for method in ("reference", "grid", "bag"):
            assert row[f"{method}_forward_s"] > 0 and row[f"{method}_train_s"] > 0
