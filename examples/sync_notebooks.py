"""Write each ``examples/*.py`` script (``# %%`` cell markers) as the notebook next to it.

The scripts are the source of truth (the tests run them); run this after editing one:
``python examples/sync_notebooks.py``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

CELL_MARKER = re.compile(r"^# %%( \[markdown\])?\s*$", re.MULTILINE)
NOTEBOOK_FORMAT = 4
NOTEBOOK_MINOR_FORMAT = 5


def script_cells(script: str) -> list[tuple[str, str]]:
    """``[(cell_type, source), ...]`` of a percent-format script; markdown cells lose their ``# ``."""
    cells = []
    markers = list(CELL_MARKER.finditer(script))
    for marker, following in zip(markers, markers[1:] + [None]):
        body = script[marker.end() : following.start() if following else len(script)].strip("\n")
        if marker.group(1):
            body = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in body.splitlines())
            cells.append(("markdown", body))
        else:
            cells.append(("code", body))
    return cells


def notebook(cells: list[tuple[str, str]]) -> dict:
    def cell(kind: str, source: str) -> dict:
        entry = {"cell_type": kind, "metadata": {}, "source": source.splitlines(keepends=True)}
        if kind == "code":
            entry.update(execution_count=None, outputs=[])
        return entry

    return {
        "cells": [cell(kind, source) for kind, source in cells],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                     "language_info": {"name": "python"}},
        "nbformat": NOTEBOOK_FORMAT,
        "nbformat_minor": NOTEBOOK_MINOR_FORMAT,
    }


def main() -> int:
    for script in sorted(Path(__file__).parent.glob("*.py")):
        if script.name == Path(__file__).name:
            continue
        target = script.with_suffix(".ipynb")
        target.write_text(json.dumps(notebook(script_cells(script.read_text())), indent=1) + "\n")
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
