"""Atomic file writes: write next to the target, then ``os.replace`` it into place.

A reader (or an evaluator globbing ``*.png``) never sees a half-written file: either the old
content or the complete new one. The temporary file is hidden (leading dot), lives in the target's
directory (so the rename stays on one file system) and keeps the target's extension, so writers
that pick a format from the file name (PIL, PyAV) still do. It is removed if writing fails.

These helpers guard against a crash or an exception in this process; they do not ``fsync``, so
they do not promise durability across a power loss (one ``fsync`` per frame would slow long-video
writers for little gain).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image

from samkit.errors import InputError

_TEMP_TAG_LENGTH = 12


def temp_path_for(target: Path) -> Path:
    """A fresh hidden temporary name next to ``target`` that ends with the same extension."""
    tag = uuid.uuid4().hex[:_TEMP_TAG_LENGTH]
    return target.with_name(f".{target.stem}.{tag}.tmp{target.suffix}")


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path for a writer that needs a file name (PyAV, ``np.savez``).

    On a normal exit the temporary file replaces ``path``; on an exception it is deleted and
    ``path`` is left untouched. Parent directories are created.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = temp_path_for(target)
    try:
        yield temporary
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", **open_kwargs: Any) -> Iterator[IO[Any]]:
    """``open(path, mode)`` for writing, made atomic: the file appears complete or not at all."""
    if mode not in ("w", "wt", "wb"):
        raise ValueError(f"atomic_open writes whole files; mode must be 'w', 'wt' or 'wb', got {mode!r}")
    exclusive_mode = mode.replace("w", "x")
    with atomic_path(path) as temporary, open(temporary, exclusive_mode, **open_kwargs) as handle:
        yield handle


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    with atomic_open(path, "w", encoding=encoding) as handle:
        handle.write(text)
    return Path(path)


def atomic_save_image(
    path: str | os.PathLike[str], image: Image.Image | np.ndarray, **save_params: Any
) -> Path:
    """Save a PIL image or a uint8 array (``Image.fromarray``) to ``path`` atomically.

    The format comes from the extension (``.png``, ``.jpg``...); ``save_params`` go to ``Image.save``.
    """
    target = Path(path)
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    image_format = Image.registered_extensions().get(target.suffix.lower())
    if image_format is None:
        raise InputError(f"cannot tell the image format of {target}: use an extension such as .png or .jpg")
    with atomic_open(target, "wb") as handle:
        image.save(handle, format=image_format, **save_params)
    return target
