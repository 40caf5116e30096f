"""Plain YAML / dict configs: no global Hydra state."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from samkit.errors import InputError


def read_config(path_or_dict: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """Return a config as a dict, reading YAML when given a path."""
    if isinstance(path_or_dict, Mapping):
        return dict(path_or_dict)
    path = Path(path_or_dict)
    if not path.is_file():
        raise InputError(f"config file {path} does not exist; give a YAML file path or a dict")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise InputError(f"config file {path} is not valid YAML: {error}") from None
    if not isinstance(config, dict):
        raise InputError(f"config file {path} must hold a mapping at the top level, got {type(config).__name__}")
    return config
