"""FewShotSegmenter: official pre/post-processing, support reuse, bad input, the CLI and the example."""

import runpy
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import samkit
from samkit.checkpoints import UntrainedWeightsWarning
from samkit.errors import InputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def picture(seed: int, shape=(70, 90)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    mask = np.zeros(shape, bool)
    mask[10:40, 20:60] = True
    return image, mask


def count_query_encodes(seg, monkeypatch) -> list[int]:
    """The batch size of every ``encode_query`` call from now on (appended in place)."""
    encoded = []
    encode_query = seg.model.encode_query
    monkeypatch.setattr(seg.model, "encode_query", lambda images: encoded.append(len(images)) or encode_query(images))
    return encoded


@pytest.fixture(scope="module")
def seg():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedWeightsWarning)
        return samkit.load("fssam", backbone="tiny-sam2", device="cpu")


def test_predict_follows_the_official_evaluation_path(seg):
    image, mask = picture(0)
    query, _ = picture(1, shape=(50, 64))
    result = seg.predict(query, prompt=samkit.SupportSet([image], [mask]))
    size = seg.image_size

    def to_model(array):
        return F.interpolate(torch.from_numpy(array).permute(2, 0, 1)[None].float(), size=(size, size),
                             mode="bilinear", align_corners=False)

    support_mask = F.interpolate(torch.from_numpy(mask.astype(np.float32))[None, None], size=(size, size))[:, 0]
    with torch.no_grad():
        logits = seg.model(to_model(query), to_model(image)[:, None], support_mask[:, None])
    full = F.interpolate(logits[:, None], size=query.shape[:2], mode="bilinear", align_corners=True)[0, 0]
    assert result.masks.shape == (1, 50, 64) and result.masks.dtype == bool
    np.testing.assert_array_equal(result.masks[0], (full.sigmoid() >= 0.5).numpy())
    np.testing.assert_allclose(result.logits[0], logits[0].numpy(), atol=1e-5)
    probability = full.sigmoid()
    expected = probability[full.sigmoid() >= 0.5].mean() if result.masks.any() else probability.max()
    assert result.scores[0] == pytest.approx(float(expected), abs=1e-5)


def test_support_reuse_equals_independent_predicts(seg):
    support = samkit.SupportSet(*zip(*[picture(seed) for seed in (2, 3)]))
    queries = [picture(seed, shape=(40 + seed, 60))[0] for seed in range(5)]
    independent = [seg.predict(query, prompt=support) for query in queries]
    seg.support(support)
    reused = seg.predict_many(queries, batch_size=2)
    for alone, batched in zip(independent, reused):
        np.testing.assert_array_equal(alone.masks, batched.masks)
        np.testing.assert_allclose(alone.logits, batched.logits, atol=1e-4)
    assert seg.predict(queries[0]).masks.shape == independent[0].masks.shape


def test_several_classes_at_once_encode_the_query_once(seg, monkeypatch):
    first, second = picture(4), picture(5)
    query = picture(6)[0]
    encoded = count_query_encodes(seg, monkeypatch)
    both = seg.predict(query, prompts={3: samkit.SupportSet([first[0]], [first[1]]),
                                       7: samkit.SupportSet([second[0]], [second[1]])})
    assert encoded == [1]
    assert both.obj_ids == [3, 7] and both.masks.shape == (2, 70, 90)
    for index, (image, mask) in enumerate((first, second)):
        alone = seg.predict(query, prompt=samkit.SupportSet([image], [mask]))
        np.testing.assert_array_equal(both.masks[index], alone.masks[0])
        np.testing.assert_array_equal(both.logits[index], alone.logits[0])
        assert both.scores[index] == alone.scores[0]


def test_predict_many_goes_one_query_at_a_time_on_the_cpu(seg, monkeypatch):
    seg.support(samkit.SupportSet(*zip(picture(2))))
    queries = [picture(seed)[0] for seed in range(3)]
    encoded = count_query_encodes(seg, monkeypatch)
    seg.predict_many(queries)
    seg.predict_many(queries, batch_size=2)
    assert encoded == [1, 1, 1, 2, 1]


def test_bad_input_is_named(seg, tmp_path):
    image, mask = picture(0)
    with pytest.raises(InputError, match="2 images but 1 masks"):
        samkit.SupportSet([image, image], [mask])
    with pytest.raises(InputError, match="expected"):
        samkit.SupportSet([image], [mask[:10]])
    with pytest.raises(InputError, match="empty"):
        samkit.SupportSet([image], [np.zeros_like(mask)])
    with pytest.raises(InputError, match="0/1"):
        samkit.SupportSet([image], [mask.astype(np.uint8) * 7])
    with pytest.raises(InputError, match="K >= 1"):
        samkit.SupportSet([], [])
    with pytest.raises(InputError, match="SupportSet"):
        seg.predict(image, prompt=samkit.Mask(mask))
    with pytest.raises(InputError):
        seg.predict(image[..., 0], prompt=samkit.SupportSet([image], [mask]))  # a 2-D array is ambiguous
    rgba = np.concatenate([image, np.full((*image.shape[:2], 1), 255, np.uint8)], axis=2)
    gray_file = tmp_path / "gray.png"
    Image.fromarray(image[..., 0]).save(gray_file)
    converted = seg.predict(rgba, prompt=samkit.SupportSet([str(gray_file)], [mask]))
    assert converted.masks.shape == (1, 70, 90)
    with pytest.raises(InputError, match="sam2-hiera-small"):
        samkit.load("fssam", backbone="sam2.1-hiera-small", device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedWeightsWarning)
        two_shot = samkit.load("fssam", backbone="tiny-sam2", device="cpu", shots=2)
    with pytest.raises(InputError, match="shots=2"):
        two_shot.predict(image, prompt=samkit.SupportSet([image], [mask]))
    with pytest.raises(InputError, match="unknown|accepted"):
        samkit.load("fssam", backbone="tiny-sam2", device="cpu", turbo=True)
    with pytest.raises(InputError, match="support"):
        two_shot.predict(image)


def test_checkpoint_of_another_size_or_head_is_refused(seg, tmp_path):
    state = {f"module.{k}": v for k, v in seg.model.state_dict().items()}
    state["module.sam2.image_encoder.trunk.pos_embed"] = torch.zeros(1, 144, 7, 7)
    torch.save({"epoch": 1, "state_dict": state, "optimizer": {}}, tmp_path / "large.pth")
    with pytest.raises(InputError, match="another backbone size"):
        samkit.load("fssam", backbone="tiny-sam2", checkpoint=tmp_path / "large.pth", device="cpu")
    good = {f"module.{k}": v for k, v in seg.model.state_dict().items()}
    torch.save({"epoch": 1, "state_dict": good, "optimizer": {}}, tmp_path / "best_1shot.pth")
    loaded = samkit.load("fssam", backbone="tiny-sam2", checkpoint=tmp_path / "best_1shot.pth", device="cpu")
    assert loaded.config["trained"] is True
    image, mask = picture(0)
    support = samkit.SupportSet([image], [mask])
    np.testing.assert_array_equal(loaded.predict(image, prompt=support).masks, seg.predict(image, prompt=support).masks)


def test_cli_writes_every_format(tmp_path):
    from samkit.cli import main

    image, mask = picture(0)
    Image.fromarray(image).save(tmp_path / "s.png")
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "s_mask.png")
    queries = tmp_path / "queries"
    queries.mkdir()
    for index in range(3):
        Image.fromarray(picture(10 + index)[0]).save(queries / f"q{index}.jpg")
    support = f"{tmp_path / 's.png'}:{tmp_path / 's_mask.png'}"
    for fmt, suffix in (("png", ".png"), ("coco-rle", ".json"), ("overlay", ".png")):
        out = tmp_path / fmt
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UntrainedWeightsWarning)
            code = main(["fewshot", "--support", support, "--support", support, "--query", str(queries),
                         "--out", str(out), "--format", fmt, "--backbone", "tiny-sam2", "--device", "cpu",
                         "--batch-size", "2"])
        assert code == 0
        assert sorted(p.name for p in out.iterdir()) == [f"q{i}{suffix}" for i in range(3)]
    written = np.asarray(Image.open(tmp_path / "png" / "q0.png"))
    assert written.shape == (70, 90) and set(np.unique(written)) <= {0, 255}
    assert np.asarray(Image.open(tmp_path / "overlay" / "q0.png")).shape == (70, 90, 3)
    assert main(["fewshot", "--support", "nocolon", "--query", str(queries), "--out", str(tmp_path / "x"),
                 "--backbone", "tiny-sam2"]) == 2


def test_example_segments_a_folder_from_one_and_five_examples(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMKIT_EXAMPLE_OUT", str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedWeightsWarning)
        namespace = runpy.run_path(str(EXAMPLES / "few_shot.py"))
    results = namespace["results"]
    assert sorted(results) == [1, 5] and all(len(r) == 6 for r in results.values())
    assert results[1][0].masks.shape == (1, 120, 160)
    assert Image.open(tmp_path / "few_shot.png").size == (160 * 6, 120 * 2)
    saved = np.asarray(Image.open(tmp_path / "masks" / "query_0.png"))
    np.testing.assert_array_equal(saved == 1, results[5][0].masks[0])
