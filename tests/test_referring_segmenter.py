"""ReferringSegmenter: samkit.load, one mask per expression at the original resolution, bad input."""

import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import samkit
from samkit import InputError, Text
from samkit.checkpoints import UntrainedWeightsWarning
from samkit.referring.text import TextTruncatedWarning

SIZE = 64
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def load(**options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedWeightsWarning)
        options = {"backbone": "tiny-sam", "text_encoder": "minilm", "image_size": SIZE, "device": "cpu", **options}
        return samkit.load("refersam", **options)


@pytest.fixture(scope="module")
def segmenter():
    seg = load()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # make every branch matter (random weights, tiny model)
        for param in seg.model.vl_adapter.parameters():
            param.add_(torch.randn(param.shape, generator=gen) * 0.05)
    return seg


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, size=(50, 70, 3), dtype=np.uint8)


def manual_logits(segmenter, image, text):
    resized = np.asarray(Image.fromarray(image).resize((SIZE, SIZE), Image.BILINEAR), dtype=np.float32) / 255
    x = (torch.from_numpy(resized).permute(2, 0, 1) - torch.tensor([0.485, 0.456, 0.406])[:, None, None])
    x = x / torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    ids, mask = segmenter.tokenizer([text])
    with torch.no_grad():
        pred, _ = segmenter.model(x[None], ids, mask)
    return pred[0]


def test_one_expression_matches_the_model_at_original_resolution(segmenter, image):
    result = segmenter.predict(image, prompt=Text("the red car on the left"))
    logits = manual_logits(segmenter, image, "the red car on the left")
    expected = F.interpolate(logits[None, None], size=(50, 70), mode="bilinear", align_corners=False)[0, 0] > 0
    assert result.masks.shape == (1, 50, 70) and result.obj_ids == [1]
    assert np.array_equal(result.masks[0], expected.numpy())
    assert 0 < result.masks.mean() < 1
    np.testing.assert_allclose(result.logits[0], logits.numpy(), atol=1e-5)


def test_several_expressions_are_a_batch_of_single_predictions(segmenter, image):
    texts = [Text("a dog"), Text("the person in the middle"), Text("sky")]
    batched = segmenter.predict(image, prompt=texts)
    assert batched.obj_ids == [1, 2, 3]
    for index, text in enumerate(texts):
        single = segmenter.predict(image, prompt=text)
        np.testing.assert_allclose(batched.logits[index], single.logits[0], atol=1e-4)
    by_id = segmenter.predict(image, prompts={5: Text("sky"), 2: Text("a dog")})
    assert by_id.obj_ids == [2, 5]
    np.testing.assert_allclose(by_id.logits[1], batched.logits[2], atol=1e-4)


def test_official_compat_thresholds_at_network_resolution(image):
    seg = load(official_compat=True)
    result = seg.predict(image, prompt=Text("a dog"))
    logits = manual_logits(seg, image, "a dog")
    binary = (logits.sigmoid() >= 0.5).float()[None, None]
    expected = F.interpolate(binary, size=(50, 70), mode="nearest")[0, 0] > 0
    assert np.array_equal(result.masks[0], expected.numpy())


def test_bad_input(segmenter, image, tmp_path):
    with pytest.raises(InputError, match="empty"):
        segmenter.predict(image, prompt=Text("   "))
    with pytest.raises(InputError, match="empty"):
        segmenter.predict_batch([image], ["  "])
    with pytest.raises(InputError, match="non-empty text"):
        segmenter.tokenizer(["a dog", "\t"])
    with pytest.raises(InputError, match="2 images and 1 expressions"):
        segmenter.predict_batch([image, image], [Text("a dog")])
    with pytest.raises(InputError, match="smaller than one 16x16"):
        segmenter.predict(np.zeros((8, 40, 3), dtype=np.uint8), prompt=Text("a dog"))
    with pytest.raises(InputError, match="needs a text prompt"):
        segmenter.predict(image)
    with pytest.raises(InputError, match="Text"):
        segmenter.predict(image, prompt=samkit.Box((1, 2, 3, 4)))
    with pytest.raises(InputError, match="multiple of 32"):
        load(image_size=48)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 32}))
    with pytest.raises(InputError, match="no tokenizer"):
        load(text_encoder=str(tmp_path))


def test_long_text_is_truncated_with_a_warning(segmenter, image):
    with pytest.warns(TextTruncatedWarning, match="longer than 20 tokens"):
        result = segmenter.predict(image, prompt=Text(" ".join(["word"] * 40)))
    assert result.masks.shape == (1, 50, 70)
    ids, mask = segmenter.tokenizer(["a dog"])
    assert ids.shape == (1, 20) and mask.sum() == 4  # [CLS] a dog [SEP]


def test_checkpoint_round_trip_and_foreign_checkpoints(segmenter, image, tmp_path):
    torch.save({"model": segmenter.model.state_dict()}, tmp_path / "refersam_tiny.pth")
    reloaded = load(checkpoint=str(tmp_path / "refersam_tiny.pth"))
    assert reloaded.config["trained"]
    a = segmenter.predict(image, prompt=Text("a dog"))
    b = reloaded.predict(image, prompt=Text("a dog"))
    np.testing.assert_array_equal(a.logits, b.logits)
    from samkit.referring.build import build_sam

    torch.save(build_sam("tiny", seed=0).state_dict(), tmp_path / "sam_tiny.pth")
    with pytest.raises(InputError, match=r"bare SAM backbone \(tiny\).*refersam \(tiny\)"):
        load(checkpoint=str(tmp_path / "sam_tiny.pth"))
    state = {k.replace("vl_adapter.vis_model.patch_embed.proj.weight", "x"): v for k, v in segmenter.model.state_dict().items()}
    state["vl_adapter.vis_model.patch_embed.proj.weight"] = torch.zeros(768, 3, 16, 16)
    torch.save(state, tmp_path / "refersam_b.pth")
    with pytest.raises(InputError, match=r"refersam \(vit_b\).*refersam \(tiny\)"):
        load(checkpoint=str(tmp_path / "refersam_b.pth"))


def test_refer_cli_writes_one_mask_per_expression(tmp_path, image):
    from samkit.cli import main
    from samkit.io.masks import read_binary_png

    Image.fromarray(image).save(tmp_path / "image.png")
    common = ["--backbone", "tiny-sam", "--text-encoder", "minilm", "--image-size", str(SIZE), "--device", "cpu"]
    assert main(["refer", str(tmp_path / "image.png"), "a dog", "--text", "sky", "--out", str(tmp_path / "png"), *common]) == 0
    masks = [read_binary_png(tmp_path / "png" / f"{i:03d}.png") for i in (1, 2)]
    assert all(mask.shape == (50, 70) for mask in masks)
    assert json.loads((tmp_path / "png" / "expressions.json").read_text()) == {"001": "a dog", "002": "sky"}
    assert main(["refer", str(tmp_path / "image.png"), "a dog", "--out", str(tmp_path / "rle"), "--format", "coco-rle",
                 *common]) == 0
    document = json.loads((tmp_path / "rle" / "masks.json").read_text())
    assert [a["text"] for a in document["annotations"]] == ["a dog"] and document["height"] == 50
    assert main(["refer", str(tmp_path / "image.png"), "a dog", "--out", str(tmp_path / "ov"), "--format", "overlay",
                 *common]) == 0
    assert Image.open(tmp_path / "ov" / "overlay.png").size == (70, 50)
    assert main(["refer", str(tmp_path / "missing.png"), "a dog", "--out", str(tmp_path / "x"), *common]) == 2


def test_referring_example_runs(tmp_path, monkeypatch):
    import runpy
    from pathlib import Path

    monkeypatch.setenv("SAMKIT_EXAMPLE_OUT", str(tmp_path))
    namespace = runpy.run_path(str(Path(__file__).parents[1] / "examples" / "referring.py"))
    result = namespace["result"]
    assert result.obj_ids == [1, 2] and result.masks.shape == (2, 120, 160)
    labels = np.asarray(Image.open(tmp_path / "labels.png"))
    assert labels.shape == (120, 160) and set(np.unique(labels)) <= {0, 1, 2}
    assert json.loads((tmp_path / "masks.json").read_text())["width"] == 160
