"""Backbone registry and builders, checked against sam2 / segment-anything themselves."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from samkit.backbones.registry import BACKBONES
from samkit.backbones.sam2_models import (
    available_sam2_configs,
    build_sam2_model,
    load_sam2_config,
    resolve_sam2_config,
    sam2_package_dir,
    tiny_sam2_config_path,
)
from samkit.backbones.sam_models import SAM_VIT_DIMS, build_sam_model, build_sam_vit
from samkit.backbones.tiny import build_tiny_sam, build_tiny_sam2
from samkit.errors import InputError


def state_dicts_equal(first: torch.nn.Module, second: torch.nn.Module) -> bool:
    a, b = first.state_dict(), second.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


def test_sam2_registry_matches_sam2_hf_model_ids():
    from sam2.build_sam import HF_MODEL_ID_TO_FILENAMES

    sam2_specs = {spec.hf_repo: spec for spec in BACKBONES.values() if spec.hf_repo is not None}
    assert sam2_specs.keys() == HF_MODEL_ID_TO_FILENAMES.keys()
    for repo, (config, filename) in HF_MODEL_ID_TO_FILENAMES.items():
        spec = sam2_specs[repo]
        assert spec.name == repo.removeprefix("facebook/")
        assert (spec.family, spec.config, spec.checkpoint_filename) == ("sam2", config, filename)
        assert spec.download_url == f"https://huggingface.co/{repo}/resolve/main/{filename}"


def test_sam_registry_uses_segment_anything_keys_and_official_files():
    from segment_anything import sam_model_registry

    expected = {"sam-vit-b": ("vit_b", "sam_vit_b_01ec64.pth"), "sam-vit-l": ("vit_l", "sam_vit_l_0b3195.pth"),
                "sam-vit-h": ("vit_h", "sam_vit_h_4b8939.pth")}
    for name, (key, filename) in expected.items():
        spec = BACKBONES[name]
        assert spec.config in sam_model_registry and spec.config == key
        assert spec.checkpoint_filename == filename
        assert spec.download_url == f"https://dl.fbaipublicfiles.com/segment_anything/{filename}"


def test_available_sam2_configs_are_the_model_configs():
    configs = available_sam2_configs()
    assert {spec.config for spec in BACKBONES.values() if spec.hf_repo} == set(configs)
    assert all((sam2_package_dir() / name).is_file() for name in configs)


def test_tiny_config_keeps_every_sam2_1_tracking_flag():
    official = yaml.safe_load((sam2_package_dir() / "configs/sam2.1/sam2.1_hiera_t.yaml").read_text())["model"]
    tiny = yaml.safe_load(tiny_sam2_config_path().read_text())["model"]
    flags = {key: value for key, value in official.items() if not isinstance(value, dict) and key != "image_size"}
    assert {key: tiny[key] for key in flags} == flags
    assert set(tiny) == set(official)

    def targets(node):
        if isinstance(node, dict):
            return {node.get("_target_")} | set().union(*(targets(value) for value in node.values()))
        return set()

    assert targets(tiny) == targets(official)


@pytest.mark.parametrize("video", [False, True])
def test_config_and_overrides_equal_sam2_build_functions(monkeypatch, video):
    """Capture the config sam2.build_sam instantiates (Hydra compose) and compare with samkit's."""
    import sam2.build_sam
    from omegaconf import OmegaConf

    captured = {}

    def capture(config, **kwargs):
        captured["model"] = OmegaConf.to_container(config)
        return torch.nn.Identity()

    monkeypatch.setattr(sam2.build_sam, "instantiate", capture)
    build = sam2.build_sam.build_sam2_video_predictor if video else sam2.build_sam.build_sam2
    for config_name in available_sam2_configs():
        for apply_postprocessing in (True, False):
            build(config_name, device="cpu", hydra_overrides_extra=["++model.image_size=512"],
                  apply_postprocessing=apply_postprocessing)
            ours = load_sam2_config(sam2_package_dir() / config_name, image_size=512, video=video,
                                    apply_postprocessing=apply_postprocessing)
            assert OmegaConf.to_container(ours.model) == captured["model"], (config_name, apply_postprocessing)


def test_built_model_equals_sam2_build_sam2_with_image_size_override():
    from sam2.build_sam import build_sam2_video_predictor

    torch.manual_seed(3)
    reference = build_sam2_video_predictor("configs/sam2/sam2_hiera_t.yaml", device="cpu",
                                           hydra_overrides_extra=["++model.image_size=256"])
    model = build_sam2_model("sam2-hiera-tiny", image_size=256, video=True, seed=3)
    assert type(model) is type(reference)
    assert state_dicts_equal(model, reference)
    assert model.image_size == 256 and model.sam_image_embedding_size == 16
    assert model.fill_hole_area == 8 and model.binarize_mask_from_pts_for_mem_enc
    assert not model.training


def test_config_is_found_by_name_package_path_and_any_yaml_file(tmp_path):
    tiny_path = tiny_sam2_config_path()
    assert resolve_sam2_config("tiny-sam2")[0] == tiny_path
    official = sam2_package_dir() / "configs/sam2.1/sam2.1_hiera_s.yaml"
    for name in ("sam2.1-hiera-small", "configs/sam2.1/sam2.1_hiera_s.yaml", "sam2.1/sam2.1_hiera_s",
                 "sam2.1_hiera_s.yaml", "sam2.1_hiera_s"):
        assert resolve_sam2_config(name)[0] == official, name
    copy = tmp_path / "elsewhere" / "my_model.yaml"
    copy.parent.mkdir()
    shutil.copy(tiny_path, copy)
    assert state_dicts_equal(build_sam2_model(copy, seed=4), build_tiny_sam2(seed=4))


def test_unknown_config_and_bad_inputs_are_input_errors(tmp_path):
    with pytest.raises(InputError, match=r"no SAM 2 config 'nope'.*sam2.1-hiera-tiny.*sam2.1_hiera_t.yaml"):
        resolve_sam2_config("nope")
    with pytest.raises(InputError, match="SAM \\(segment-anything\\) model"):
        build_sam2_model("sam-vit-b")
    with pytest.raises(InputError, match="multiple of 32"):
        build_sam2_model("tiny-sam2", image_size=100)
    with pytest.raises(InputError, match="unsupported override"):
        build_sam2_model("tiny-sam2", overrides=["~model.image_size"])
    with pytest.raises(InputError, match="mode"):
        build_sam2_model("tiny-sam2", mode="inference")
    no_model = tmp_path / "no_model.yaml"
    no_model.write_text("trainer: {}\n")
    with pytest.raises(InputError, match="no top-level 'model'"):
        build_sam2_model(no_model)
    with pytest.raises(InputError, match="unknown SAM backbone 'tiny-sam2'"):
        build_sam_model("tiny-sam2")
    with pytest.raises(InputError, match="multiple of 16"):
        build_sam_model("tiny-sam", image_size=100)


def test_user_overrides_reach_the_model():
    model = build_sam2_model("tiny-sam2", overrides=["++model.num_maskmem=3", "model.max_obj_ptrs_in_encoder=4"])
    assert model.num_maskmem == 3 and model.maskmem_tpos_enc.shape[0] == 3
    assert model.max_obj_ptrs_in_encoder == 4


def test_tiny_sam2_is_seeded_and_leaves_the_global_rng_alone():
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    first = build_tiny_sam2(seed=0)
    assert torch.equal(torch.rand(3), expected)
    assert state_dicts_equal(first, build_tiny_sam2(seed=0))
    assert not state_dicts_equal(first, build_tiny_sam2(seed=1))
    assert first.image_size == 128 and not first.training


def test_tiny_sam2_video_predictor_tracks_a_short_clip(tmp_path):
    from sam2.sam2_video_predictor import SAM2VideoPredictor

    predictor = build_tiny_sam2(video=True)
    assert isinstance(predictor, SAM2VideoPredictor)
    rng = np.random.default_rng(0)
    for index in range(3):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(tmp_path / f"{index:05d}.jpg")
    state = predictor.init_state(str(tmp_path))
    predictor.add_new_points_or_box(state, frame_idx=0, obj_id=1, points=np.array([[30, 20]], np.float32),
                                    labels=np.array([1], np.int32))
    frames = [(frame, obj_ids, logits.shape) for frame, obj_ids, logits in predictor.propagate_in_video(state)]
    assert frames == [(index, [1], torch.Size([1, 1, 48, 64])) for index in range(3)]
    # memories were written by the 64-dim memory encoder on the 8x8 stride-16 grid of a 128 px input
    assert state["output_dict_per_obj"][0]["non_cond_frame_outputs"][2]["maskmem_features"].shape[1:] == (64, 8, 8)


@pytest.mark.parametrize("key", ["vit_b", "vit_l", "vit_h"])
def test_sam_vit_at_1024_is_the_upstream_model(key):
    from segment_anything import sam_model_registry

    with torch.device("meta"):
        upstream = sam_model_registry[key]()
        ours = build_sam_vit(SAM_VIT_DIMS[key])
    assert repr(ours) == repr(upstream)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in upstream.state_dict().items()}


def test_sam_image_size_override_changes_the_embedding_grid():
    model = build_sam_model("tiny-sam", image_size=64, seed=0)
    assert model.image_encoder.img_size == 64
    assert model.prompt_encoder.image_embedding_size == (4, 4)
    assert model.prompt_encoder.mask_input_size == (16, 16)
    with torch.no_grad():
        embedding = model.image_encoder(torch.zeros(1, 3, 64, 64))
    assert embedding.shape == (1, 256, 4, 4)


def test_tiny_sam_is_seeded():
    first = build_tiny_sam(seed=0)
    assert state_dicts_equal(first, build_tiny_sam(seed=0))
    assert not state_dicts_equal(first, build_tiny_sam(seed=1))
    assert first.image_encoder.img_size == 128 and not first.training
