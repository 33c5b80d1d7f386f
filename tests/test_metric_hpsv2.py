"""HPSv2.1: a tiny random open_clip ViT-H-14 saved as an HPSv2 checkpoint, loaded strictly.

Reference values come from a second code path: torchvision's own resize/pad on a
``ToTensor`` image (the reference package's route) and open_clip's
``encode_image``/``encode_text`` of the in-memory model that was saved.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from scoring.metrics.base import get_metric
from scoring.metrics.hpsv2 import (
    ARCH,
    OPENAI_MEAN,
    OPENAI_STD,
    HPSv2,
    hps_scores,
    preprocess,
    resize_longest_and_pad,
)
from scoring.testing.tiny_scorers import HPS_OVERRIDES, save_hpsv2, tiny_hpsv2
from scoring.weights import MissingWeightsError, WeightSources


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    model = tiny_hpsv2(seed=0)
    return model, save_hpsv2(model, tmp_path_factory.mktemp("hps"))


@pytest.fixture(scope="module")
def metric(tiny):
    return HPSv2.from_pretrained(tiny[1], model_overrides=HPS_OVERRIDES)


def _images():
    rng = np.random.default_rng(1)
    wide = Image.fromarray(rng.integers(0, 256, (200, 300, 3), dtype=np.uint8))
    tall = Image.fromarray(rng.integers(0, 256, (301, 97, 3), dtype=np.uint8))
    rgba = Image.fromarray(rng.integers(0, 256, (64, 64, 4), dtype=np.uint8), "RGBA")
    gray = Image.fromarray(rng.integers(0, 256, (224, 224), dtype=np.uint8), "L")
    return [wide, tall, rgba, gray]


def _reference_pixels(image: Image.Image) -> torch.Tensor:
    """The hpsv2 package's route: ToTensor, torchvision resize (bicubic) and pad, Normalize."""
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode

    x = TF.to_tensor(image.convert("RGB"))
    h, w = x.shape[1:]
    scale = 224 / max(h, w)
    if scale != 1.0:
        nh, nw = round(h * scale), round(w * scale)
        x = TF.resize(x, [nh, nw], InterpolationMode.BICUBIC, antialias=True)
        ph, pw = 224 - nh, 224 - nw
        x = TF.pad(x, [pw // 2, ph // 2, pw - pw // 2, ph - ph // 2], fill=0)
    return TF.normalize(x, OPENAI_MEAN, OPENAI_STD)


def test_scores_match_open_clip_reference(tiny, metric):
    import open_clip

    model, _ = tiny
    images = _images()
    prompts = ["1girl, solo, long hair", "a red bicycle", "1girl, solo, long hair", "a cat"]
    got = metric.score(images, prompts)

    tokenizer = open_clip.get_tokenizer(ARCH)
    with torch.no_grad():
        pixels = torch.stack([_reference_pixels(im) for im in images])
        img = model.encode_image(pixels, normalize=True)
        txt = model.encode_text(tokenizer(prompts), normalize=True)
        want = torch.diagonal(img @ txt.T).numpy()

    assert got.dtype == np.float64 and got.shape == (4,)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    # Scores are raw cosines, not x100.
    assert np.all(np.abs(got) <= 1.0)
    # Batched and one-at-a-time agree.
    single = np.array([metric.score([im], [p])[0] for im, p in zip(images, prompts, strict=True)])
    np.testing.assert_allclose(got, single, atol=1e-5, rtol=0)


def _unnormalise(x: torch.Tensor) -> np.ndarray:
    mean = torch.tensor(OPENAI_MEAN).view(3, 1, 1)
    std = torch.tensor(OPENAI_STD).view(3, 1, 1)
    return (x * std + mean).numpy()


def test_wide_image_is_padded_not_cropped():
    # 448 wide x 224 tall -> 224 x 112, centred with 56 black rows above and below.
    image = Image.new("RGB", (448, 224), (255, 255, 255))
    x = _unnormalise(preprocess(image))
    assert x.shape == (3, 224, 224)
    np.testing.assert_allclose(x[:, :56, :], 0.0, atol=1e-6)
    np.testing.assert_allclose(x[:, 168:, :], 0.0, atol=1e-6)
    np.testing.assert_allclose(x[:, 56:168, :], 1.0, atol=1e-5)


def test_tall_image_odd_padding_splits_left_floor():
    # 97 x 301 -> height 224, width round(97 * 224 / 301) = 72: pad 152 -> 76 left, 76 right.
    # 100 x 300 -> width round(74.67) = 75: pad 149 -> 74 left, 75 right.
    image = Image.new("RGB", (100, 300), (10, 200, 30))
    x = _unnormalise(preprocess(image))
    np.testing.assert_allclose(x[:, :, :74], 0.0, atol=1e-6)
    np.testing.assert_allclose(x[:, :, 74 + 75 :], 0.0, atol=1e-6)
    colour = np.array([10, 200, 30], dtype=np.float64) / 255
    np.testing.assert_allclose(x[:, :, 74:149].mean(axis=(1, 2)), colour, atol=1e-5)
    assert np.all(np.abs(x[:, :, 74]).sum(axis=0) > 0.1)  # first image column is not padding


def test_square_224_image_passes_through_and_normalises():
    rng = np.random.default_rng(2)
    arr = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    x = preprocess(Image.fromarray(arr)).numpy()
    want = (arr.transpose(2, 0, 1) / 255.0 - np.array(OPENAI_MEAN)[:, None, None]) / np.array(
        OPENAI_STD
    )[:, None, None]
    np.testing.assert_allclose(x, want, atol=1e-5)


def test_longest_side_224_non_square_is_still_padded():
    # The reference would skip the pad here and hand the model a 224x112 tensor.
    x = resize_longest_and_pad(torch.ones(3, 112, 224))
    assert x.shape == (3, 224, 224)
    assert float(x[:, :56].abs().max()) == 0.0 and float(x[:, 56:168].min()) == 1.0


def test_rgba_is_converted_to_rgb():
    arr = np.zeros((32, 32, 4), dtype=np.uint8)
    arr[..., 0] = 255  # red, fully transparent: PIL's RGB conversion drops alpha
    x = _unnormalise(preprocess(Image.fromarray(arr, "RGBA")))
    assert x.shape == (3, 224, 224)
    np.testing.assert_allclose(x[:, 100, 100], [1.0, 0.0, 0.0], atol=1e-5)


def test_hps_scores_is_paired_cosine():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(5, 8)), rng.normal(size=(5, 8))
    want = [float(a[i] @ b[i] / np.linalg.norm(a[i]) / np.linalg.norm(b[i])) for i in range(5)]
    np.testing.assert_allclose(hps_scores(a, b), want, rtol=1e-12)
    np.testing.assert_allclose(hps_scores(3 * a, 0.5 * b), want, rtol=1e-12)
    np.testing.assert_allclose(hps_scores(a, a), 1.0, rtol=1e-12)
    with pytest.raises(ValueError, match="paired"):
        hps_scores(a, b[:4])


def test_registered_and_needs_prompts(metric):
    assert get_metric("hpsv2") is HPSv2
    assert HPSv2.needs_prompt and HPSv2.higher_is_better
    with pytest.raises(ValueError, match="one prompt per image"):
        metric.score(_images()[:2], ["only one"])
    assert metric.score([], []).shape == (0,)


def test_missing_weights_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(MissingWeightsError) as err:
        HPSv2.from_pretrained(sources=WeightSources(tmp_path / "weights"))
    message = str(err.value)
    assert "HPS_v2.1_compressed.pt" in message and "xswu/HPSv2" in message
    assert str(tmp_path / "weights") in message
    with pytest.raises(MissingWeightsError, match=r"HPS_v2\.1_compressed\.pt"):
        HPSv2.from_pretrained(tmp_path / "nowhere")


def test_weights_found_in_weights_dir(tiny, tmp_path, monkeypatch):
    folder = tmp_path / "weights" / "xswu" / "HPSv2"
    folder.mkdir(parents=True)
    (folder / "HPS_v2.1_compressed.pt").write_bytes(tiny[1].read_bytes())
    loaded = HPSv2.from_pretrained(
        model_overrides=HPS_OVERRIDES, sources=WeightSources(tmp_path / "weights")
    )
    image = _images()[:1]
    np.testing.assert_allclose(
        loaded.score(image, ["x"]),
        HPSv2.from_pretrained(tiny[1], model_overrides=HPS_OVERRIDES).score(image, ["x"]),
        atol=1e-6,
    )


def test_bad_checkpoints_give_clear_errors(tiny, tmp_path):
    model, _ = tiny
    no_key = tmp_path / "no_key.pt"
    torch.save(model.state_dict(), no_key)
    with pytest.raises(ValueError, match="no 'state_dict' key"):
        HPSv2.from_pretrained(no_key, model_overrides=HPS_OVERRIDES)

    partial = tmp_path / "partial.pt"
    state = dict(model.state_dict())
    state.pop("logit_scale")
    torch.save({"state_dict": state}, partial)
    with pytest.raises(ValueError, match="strict load failed"):
        HPSv2.from_pretrained(partial, model_overrides=HPS_OVERRIDES)

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable torch checkpoint"):
        HPSv2.from_pretrained(garbage, model_overrides=HPS_OVERRIDES)


def test_module_prefix_from_ddp_is_stripped(tiny, tmp_path):
    model, _ = tiny
    path = tmp_path / "ddp.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    loaded = HPSv2.from_pretrained(path, model_overrides=HPS_OVERRIDES)
    image = _images()[:1]
    reference = HPSv2.from_pretrained(tiny[1], model_overrides=HPS_OVERRIDES)
    np.testing.assert_allclose(loaded.score(image, ["x"]), reference.score(image, ["x"]), atol=1e-6)


def test_preprocessor_is_picklable_for_worker_processes(metric):
    import pickle

    fn = pickle.loads(pickle.dumps(metric.preprocessor()))
    image = _images()[0]
    assert torch.equal(fn(image), preprocess(image))
    batch = metric.prepare(_images())
    assert tuple(batch.shape) == (4, 3, 224, 224)
    np.testing.assert_allclose(
        metric.score_inputs(batch, ["a"] * 4), metric.score(_images(), ["a"] * 4), atol=1e-6
    )


def test_half_precision_needs_cuda(tiny):
    with pytest.raises(ValueError, match="needs a CUDA device"):
        HPSv2.from_pretrained(tiny[1], dtype="fp16", model_overrides=HPS_OVERRIDES)


def test_half_precision_checkpoint_loads_into_fp32(tiny, tmp_path, metric):
    # The published file stores fp16 tensors; strict loading casts them to the fp32 model.
    model, _ = tiny
    path = tmp_path / "HPS_v2.1_compressed.pt"
    torch.save({"state_dict": {k: v.half() for k, v in model.state_dict().items()}}, path)
    loaded = HPSv2.from_pretrained(path, model_overrides=HPS_OVERRIDES)
    assert next(loaded.model.parameters()).dtype == torch.float32
    images, prompts = _images(), ["a", "b", "c", "d"]
    np.testing.assert_allclose(
        loaded.score(images, prompts), metric.score(images, prompts), atol=2e-3
    )


def test_prompts_are_encoded_once_per_job(tiny):
    """A job meets each prompt in many batches: its text embedding is computed once and
    reused, and the scores equal a fresh metric's."""
    prompts = ["a cat", "a dog", "a cat", "a red bicycle"]
    fresh = HPSv2.from_pretrained(tiny[1], model_overrides=HPS_OVERRIDES).score(
        _images()[2:], prompts[2:]
    )
    metric = HPSv2.from_pretrained(tiny[1], model_overrides=HPS_OVERRIDES)
    first = metric.score(_images(), prompts)
    assert sorted(metric.prompt_cache.rows) == ["a cat", "a dog", "a red bicycle"]
    kept = metric.prompt_cache.rows["a cat"]
    again = metric.score(_images()[2:], prompts[2:])
    assert metric.prompt_cache.rows["a cat"] is kept and len(metric.prompt_cache.rows) == 3
    np.testing.assert_allclose(again, first[2:], atol=1e-6)
    np.testing.assert_allclose(again, fresh, atol=1e-6)
