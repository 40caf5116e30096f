"""A third-party head installed as a real distribution appears in ``samkit.list_models``, ``samkit models``
and ``samkit.load`` through the ``samkit.heads`` entry-point group, and predicts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTION = "samkit-dummy-head"
PACKAGE = "samkit_dummy_head"

PYPROJECT = f"""
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{DISTRIBUTION}"
version = "0.0.1"

[project.entry-points."samkit.heads"]
dummy = "{PACKAGE}.spec:HEADS"

[tool.setuptools]
packages = ["{PACKAGE}"]
"""

SPEC = """
from samkit.registry import HeadSpec

HEADS = (
    HeadSpec(name="dummy-threshold", builder="samkit_dummy_head.segmenter:build", input_kind="image",
             prompt_types=("Box",), description="bright pixels inside a box (plug-in test head)"),
)
"""

SEGMENTER = """
import numpy as np
import torch

from samkit import Box, ImageResult, Segmenter
from samkit.building import prepare
from samkit.io.images import load_image
from samkit.prompts import normalize_prompts


class ThresholdSegmenter(Segmenter):
    def __init__(self, spec, device, level):
        self.spec, self.device, self.level = spec, device, level
        self.model = torch.nn.Identity()
        self.config = {"name": spec.name, "level": level}

    def predict(self, inputs, prompt=None, *, prompts=None):
        self._ensure_open()
        rgb = load_image(inputs)
        by_object = normalize_prompts(prompt, prompts, (Box,), head=self.spec.name)
        masks = []
        for obj_id in sorted(by_object):
            x0, y0, x1, y1 = (int(value) for value in by_object[obj_id][0].xyxy)
            inside = np.zeros(rgb.shape[:2], dtype=bool)
            inside[y0:y1 + 1, x0:x1 + 1] = True
            masks.append(inside & (rgb.mean(axis=2) > self.level))
        return ImageResult(masks=np.stack(masks), scores=np.ones(len(masks), np.float32),
                           obj_ids=sorted(by_object))


def build(spec, *, backbone=None, checkpoint=None, backbone_checkpoint=None, device="auto", level=128):
    plan = prepare(spec, device=device, checkpoint=checkpoint)
    return ThresholdSegmenter(spec, plan.device, level)
"""

SCRIPT = """
import io, json, warnings
from contextlib import redirect_stdout

import numpy as np
import samkit
from samkit.cli import main

warnings.simplefilter("ignore")
names = samkit.list_models()
listing = io.StringIO()
with redirect_stdout(listing):
    main(["models"])
image = np.zeros((20, 30, 3), np.uint8)
image[5:10, 4:12] = 200
with samkit.load("dummy-threshold", device="cpu", level=100) as segmenter:
    result = segmenter.predict(image, prompts={3: samkit.Box([0, 0, 9, 19])})
try:
    samkit.load("dummy-threshold", colour="red")
    unknown = None
except samkit.InputError as error:
    unknown = str(error)
spec = samkit.registry.get_spec("dummy-threshold")
print(json.dumps({"names": names, "listing": listing.getvalue(), "mask": result.masks[0].tolist(),
                  "obj_ids": result.obj_ids, "unknown": unknown, "source": spec.source,
                  "closed": segmenter.closed, "problems": [str(p) for p in samkit.registry.problems()]}))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The dummy distribution built and installed (no dependencies, no isolation) into a target folder."""
    source = tmp_path_factory.mktemp("dummy_source")
    (source / "pyproject.toml").write_text(PYPROJECT)
    (source / PACKAGE).mkdir()
    (source / PACKAGE / "__init__.py").write_text("")
    (source / PACKAGE / "spec.py").write_text(textwrap.dedent(SPEC))
    (source / PACKAGE / "segmenter.py").write_text(textwrap.dedent(SEGMENTER))
    target = tmp_path_factory.mktemp("dummy_site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(source)],
                   check=True, capture_output=True, text=True, timeout=300)
    assert list(target.glob(f"{PACKAGE.replace('-', '_')}-0.0.1.dist-info/entry_points.txt"))
    return target


def test_installed_plugin_head_is_listed_loaded_and_predicts(installed):
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([str(installed), str(ROOT)]))
    completed = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300,
                               env=environment, check=False)
    assert completed.returncode == 0, completed.stderr
    found = json.loads(completed.stdout.strip().splitlines()[-1])
    assert found["names"].index("dummy-threshold") < found["names"].index("tiny-sam2")  # a head, not a backbone
    assert {"sam2long", "sam2"} <= set(found["names"])  # the built-ins are still there
    line = next(line for line in found["listing"].splitlines() if line.startswith("dummy-threshold"))
    assert line.split()[1:3] == ["head", "image"] and line.endswith(f"[from distribution '{DISTRIBUTION}']")
    assert found["source"] == f"distribution '{DISTRIBUTION}'"
    expected = [[5 <= y < 10 and 4 <= x < 10 for x in range(30)] for y in range(20)]  # box x <= 9 cuts the square
    assert found["mask"] == expected and found["obj_ids"] == [3]
    assert found["closed"] is True
    assert "unknown option(s) ['colour'] for 'dummy-threshold'" in found["unknown"]
    assert "level" in found["unknown"]
    assert found["problems"] == []


def test_without_the_plugin_on_the_path_the_head_is_absent():
    completed = subprocess.run(
        [sys.executable, "-c", "import samkit; print('dummy-threshold' in samkit.list_models())"],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True,
    )
    assert completed.stdout.strip() == "False"
