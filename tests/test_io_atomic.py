"""Atomic writers: a failed write leaves no file, no temp file and the old content intact."""

import os

import numpy as np
import pytest
from PIL import Image

from samkit import InputError
from samkit.io.atomic import (
    atomic_open,
    atomic_path,
    atomic_save_image,
    atomic_write_bytes,
    atomic_write_text,
)


class Boom(RuntimeError):
    pass


def test_write_bytes_and_text(tmp_path):
    atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01\x02")
    atomic_write_text(tmp_path / "sub" / "b.txt", "héllo")
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01\x02"
    assert (tmp_path / "sub" / "b.txt").read_text(encoding="utf-8") == "héllo"
    assert sorted(os.listdir(tmp_path)) == ["a.bin", "sub"]


def test_failure_mid_write_leaves_no_new_file_and_no_temp(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(Boom), atomic_open(target, "w") as handle:
        handle.write('{"partial": ')
        raise Boom()
    assert not target.exists()
    assert os.listdir(tmp_path) == []


def test_failure_mid_write_keeps_old_content(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(Boom), atomic_open(target, "w") as handle:
        handle.write("new and half")
        raise Boom()
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_success_replaces_old_content(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_atomic_path_keeps_extension_and_directory(tmp_path):
    target = tmp_path / "clip.mp4"
    with atomic_path(target) as temporary:
        assert temporary.parent == tmp_path
        assert temporary.suffix == ".mp4"
        assert temporary.name.startswith(".")
        assert temporary != target
        assert not target.exists()
        temporary.write_bytes(b"data")
    assert target.read_bytes() == b"data"
    assert os.listdir(tmp_path) == ["clip.mp4"]


def test_atomic_path_failure_removes_temp(tmp_path):
    with pytest.raises(Boom), atomic_path(tmp_path / "clip.mp4") as temporary:
        temporary.write_bytes(b"half")
        raise Boom()
    assert os.listdir(tmp_path) == []


def test_file_permissions_follow_umask_like_plain_open(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic_write_text(tmp_path / "atomic.txt", "x")
    assert (tmp_path / "atomic.txt").stat().st_mode == plain.stat().st_mode


def test_atomic_save_image_round_trip_and_format_from_suffix(tmp_path):
    pixels = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10
    atomic_save_image(tmp_path / "img.png", Image.fromarray(pixels))
    with Image.open(tmp_path / "img.png") as image:
        assert image.format == "PNG"
        assert np.array_equal(np.array(image), pixels)
    atomic_save_image(tmp_path / "array.jpg", pixels, quality=95)
    with Image.open(tmp_path / "array.jpg") as image:
        assert image.format == "JPEG" and image.size == (3, 2)
    with pytest.raises(InputError, match="img.unknownext"):
        atomic_save_image(tmp_path / "img.unknownext", pixels)
    assert sorted(os.listdir(tmp_path)) == ["array.jpg", "img.png"]


def test_atomic_open_rejects_append_mode(tmp_path):
    with pytest.raises(ValueError, match="mode"), atomic_open(tmp_path / "x.txt", "a"):
        pass
