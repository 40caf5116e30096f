"""Checkpoint resolution: local paths, the samkit cache, downloads (faked, never the network), offline mode."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub
import pytest
import torch.hub

from samkit.backbones.registry import BACKBONES
from samkit.errors import InputError
from samkit.hub import checkpoint_cache_path, is_offline, resolve_checkpoint, samkit_home

SAM2_TINY = BACKBONES["sam2.1-hiera-tiny"]
SAM_B = BACKBONES["sam-vit-b"]


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty samkit cache, online, with both download functions failing loudly if called."""
    monkeypatch.setenv("SAMKIT_HOME", str(tmp_path / "samkit_home"))
    monkeypatch.delenv("SAMKIT_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def no_network(*args, **kwargs):
        raise AssertionError(f"unexpected download {args} {kwargs}")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path / "samkit_home"


def fake_hf_download(calls: list):
    def download(repo_id, filename, *, local_dir, **kwargs):
        calls.append((repo_id, filename))
        target = Path(local_dir) / filename
        target.write_bytes(b"weights")
        return str(target)

    return download


def test_local_file_is_returned_as_is(home, tmp_path):
    path = tmp_path / "my.pt"
    path.write_bytes(b"x")
    assert resolve_checkpoint(path, SAM2_TINY) == path
    assert resolve_checkpoint(str(path), "sam-vit-b") == path


def test_cache_location_follows_samkit_home(home):
    assert samkit_home() == home
    assert checkpoint_cache_path(SAM2_TINY) == home / "checkpoints" / "sam2.1_hiera_tiny.pt"


def test_default_home_is_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("SAMKIT_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert samkit_home() == tmp_path / ".cache" / "samkit"


@pytest.mark.parametrize("checkpoint_id", ["facebook/sam2.1-hiera-tiny", "sam2.1-hiera-tiny", "sam2.1_hiera_tiny.pt"])
def test_cached_known_id_is_used_without_download(home, checkpoint_id):
    cached = home / "checkpoints" / "sam2.1_hiera_tiny.pt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"weights")
    assert resolve_checkpoint(checkpoint_id, SAM2_TINY) == cached


@pytest.mark.parametrize("checkpoint_id", ["facebook/sam2-hiera-base-plus", "sam2_hiera_base_plus.pt"])
def test_sam2_download_uses_hf_hub_once(home, monkeypatch, checkpoint_id):
    calls: list = []
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_hf_download(calls))
    spec = BACKBONES["sam2-hiera-base-plus"]
    first = resolve_checkpoint(checkpoint_id, spec)
    second = resolve_checkpoint(checkpoint_id, spec)
    assert first == second == home / "checkpoints" / "sam2_hiera_base_plus.pt"
    assert first.read_bytes() == b"weights"
    assert calls == [("facebook/sam2-hiera-base-plus", "sam2_hiera_base_plus.pt")]


def test_sam_download_uses_official_url_into_a_temp_file(home, monkeypatch):
    calls: list = []

    def download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, Path(dst)))
        assert Path(dst).parent == home / "checkpoints" and Path(dst).name != "sam_vit_b_01ec64.pth"
        Path(dst).write_bytes(b"sam weights")

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    path = resolve_checkpoint("sam_vit_b_01ec64.pth", SAM_B)
    assert path == home / "checkpoints" / "sam_vit_b_01ec64.pth"
    assert path.read_bytes() == b"sam weights"
    assert [url for url, _ in calls] == ["https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["sam_vit_b_01ec64.pth"]
    assert resolve_checkpoint("sam-vit-b", SAM_B) == path
    assert len(calls) == 1


@pytest.mark.parametrize("variable", ["SAMKIT_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_and_not_cached_says_where_to_put_the_file(home, monkeypatch, variable):
    monkeypatch.setenv(variable, "1")
    with pytest.raises(InputError) as error:
        resolve_checkpoint("facebook/sam2.1-hiera-tiny", SAM2_TINY)
    message = str(error.value)
    assert "sam2.1_hiera_tiny.pt" in message
    assert str(home / "checkpoints" / "sam2.1_hiera_tiny.pt") in message
    assert "facebook/sam2.1-hiera-tiny" in message
    with pytest.raises(InputError, match="https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth"):
        resolve_checkpoint("sam-vit-l", "sam-vit-l")


def test_offline_flag_values(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("SAMKIT_OFFLINE", "0")
    assert not is_offline()
    monkeypatch.setenv("SAMKIT_OFFLINE", "true")
    assert is_offline()


def test_failed_download_leaves_nothing_and_explains(home, monkeypatch):
    def broken(url, dst, hash_prefix=None, progress=True):
        Path(dst).write_bytes(b"partial")
        raise ConnectionError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", broken)
    with pytest.raises(InputError, match=r"(?s)network unreachable.*put it at .*sam_vit_h_4b8939\.pth"):
        resolve_checkpoint("sam_vit_h_4b8939.pth", "sam-vit-h")
    assert list((home / "checkpoints").iterdir()) == []


def test_checkpoint_of_another_backbone_is_named(home):
    with pytest.raises(InputError, match="official checkpoint of backbone 'sam-vit-b', not of 'sam2.1-hiera-tiny'"):
        resolve_checkpoint("sam_vit_b_01ec64.pth", SAM2_TINY)


def test_unknown_checkpoint_lists_known_ids(home):
    with pytest.raises(InputError, match=r"missing\.pt does not exist.*facebook/sam2\.1-hiera-tiny"):
        resolve_checkpoint("missing.pt", SAM2_TINY)


def test_tiny_backbone_has_no_official_checkpoint(home):
    with pytest.raises(InputError, match="no official checkpoint"):
        resolve_checkpoint("tiny-sam2", "tiny-sam2")
    with pytest.raises(InputError, match="random test backbone"):
        resolve_checkpoint("other.pt", "tiny-sam")


def test_directory_is_not_a_checkpoint(home, tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        resolve_checkpoint(tmp_path, SAM2_TINY)
