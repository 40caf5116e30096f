"""``import samkit`` and ``samkit.list_models()`` load no heavy upstream package; building a model does."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["sam2", "segment_anything", "transformers", "timm", "hydra"]


def loaded_after(code: str) -> dict[str, bool]:
    script = f"import json, sys\n{code}\nprint(json.dumps({{name: name in sys.modules for name in {HEAVY!r}}}))"
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_import_and_list_models_stay_light():
    loaded = loaded_after("import samkit\nassert 'tiny-sam2' in samkit.list_models()")
    assert loaded == {name: False for name in HEAVY}


def test_building_a_tiny_sam2_imports_sam2():
    loaded = loaded_after("from samkit.backbones.tiny import build_tiny_sam2\nbuild_tiny_sam2()")
    assert loaded["sam2"] and loaded["hydra"]
    assert not loaded["segment_anything"] and not loaded["transformers"]
