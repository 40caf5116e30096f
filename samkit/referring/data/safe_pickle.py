"""A restricted unpickler for the refer ``refs(*).p`` files: plain containers and scalars only.

The RefCOCO-family annotation pickles hold lists, dicts, strings and numbers. A pickle can name any
importable callable and run it while loading, so these files are read with an unpickler that refuses
every global except ``set`` / ``frozenset``: a file that would run code raises ``InputError``.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from samkit.errors import InputError

_ALLOWED_GLOBALS = {
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("__builtin__", "set"),  # Python 2 pickles (the original refer files) name builtins this way
    ("__builtin__", "frozenset"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return frozenset if name == "frozenset" else set
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")


def load_plain_pickle(path: str | Path) -> Any:
    """Load a pickle that may contain only plain containers and scalars; anything else -> InputError."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            return _RestrictedUnpickler(handle, encoding="utf-8").load()
    except (pickle.UnpicklingError, AttributeError, EOFError, UnicodeDecodeError, ValueError) as error:
        raise InputError(
            f"{path} is not a plain-data pickle (only lists, dicts, strings and numbers are accepted): {error}"
        ) from error
