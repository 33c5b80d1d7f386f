"""CLIP score and the LAION aesthetic predictor on tiny random ViT-L/14-family weights.

The weights are written in the real formats (open_clip hub repo layout, the reference
``.pth`` state dict) and loaded through ``from_pretrained``; reference values come from
a second code path: open_clip's own ``encode_image``/``encode_text`` on a model built
separately, with the preprocessing done by hand in PIL/numpy.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from scoring import _compat  # noqa: F401  (before open_clip imports torchvision)
from scoring.metrics.aesthetic import AESTHETIC_MLP, Aesthetic, aesthetic_from_embeddings
from scoring.metrics.clip_score import ClipScore, clip_scores
from scoring.metrics.openai_clip import VITL14_OPENAI, parse_dtype
from scoring.testing.tiny_clip import TINY_MODEL_CFG, write_tiny_aesthetic, write_tiny_clip
from scoring.weights import MissingWeightsError, WeightSources

MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
STD = np.array([0.26862954, 0.26130258, 0.27577711])
EOT = 49407


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vitl14")
    write_tiny_clip(folder, seed=1)
    write_tiny_aesthetic(folder, seed=2)
    return folder


@pytest.fixture(scope="module")
def reference_model(weights):
    """The same checkpoint in a separately built open_clip CLIP (QuickGELU, tiny config)."""
    import open_clip

    model = open_clip.CLIP(**TINY_MODEL_CFG)
    model.load_state_dict(torch.load(weights / VITL14_OPENAI.filename, weights_only=True))
    return model.eval()


def images(n=4, seed=0):
    rng = np.random.default_rng(seed)
    shapes = [(40, 50), (64, 32), (32, 32), (45, 45), (90, 60)]
    return [
        Image.fromarray(rng.integers(0, 256, (*shapes[i % 5], 3), dtype=np.uint8)) for i in range(n)
    ]


def preprocess_by_hand(img: Image.Image, size: int = 32) -> torch.Tensor:
    """Shortest side to ``size`` (PIL bicubic), centre crop, [0, 1], OpenAI mean/std."""
    w, h = img.size
    scale = size / min(w, h)
    new = (size, round(h * scale)) if w <= h else (round(w * scale), size)
    img = img.resize(new, Image.Resampling.BICUBIC)
    left = round((img.width - size) / 2.0)
    top = round((img.height - size) / 2.0)
    img = img.crop((left, top, left + size, top + size))
    arr = (np.asarray(img, dtype=np.float64) / 255.0 - MEAN) / STD
    return torch.from_numpy(arr.transpose(2, 0, 1).astype(np.float32))


def hand_embeddings(model, imgs, prompts):
    import open_clip

    tok = open_clip.get_tokenizer("ViT-L-14")
    with torch.no_grad():
        img = model.encode_image(torch.stack([preprocess_by_hand(i) for i in imgs]))
        txt = model.encode_text(tok(prompts))
    return img.double().numpy(), txt.double().numpy()


def cos(a, b):
    return np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_clip_score_matches_open_clip_by_hand(weights, reference_model):
    metric = ClipScore.from_pretrained(weights / VITL14_OPENAI.filename)
    imgs = images(5)
    prompts = ["a red fox", "a city at night", "a red fox", "", "two dogs on a beach"]
    hand_img, hand_txt = hand_embeddings(reference_model, imgs, prompts)
    # The embeddings themselves (before the clamp), then the score.
    inputs = metric.prepare(imgs)
    got_img = metric.features(inputs).double().numpy()
    np.testing.assert_allclose(
        got_img, hand_img / np.linalg.norm(hand_img, axis=1)[:, None], atol=1e-5
    )
    got_cos = np.sum(got_img * metric.encoder.encode_texts(prompts).double().numpy(), 1)
    np.testing.assert_allclose(got_cos, cos(hand_img, hand_txt), atol=1e-5)
    expected = 100.0 * np.maximum(cos(hand_img, hand_txt), 0.0)
    np.testing.assert_allclose(metric.score(imgs, prompts), expected, atol=1e-5)
    assert metric.score([], []).shape == (0,)


def test_openai_weights_are_run_with_quick_gelu(weights, reference_model):
    import open_clip

    metric = ClipScore.from_pretrained(weights / VITL14_OPENAI.filename)
    blocks = metric.encoder.model.visual.transformer.resblocks
    assert all(isinstance(b.mlp.gelu, open_clip.transformer.QuickGELU) for b in blocks)
    # The activation matters: the same weights with plain GELU embed differently.
    cfg = {**TINY_MODEL_CFG, "quick_gelu": False}
    plain = open_clip.CLIP(**cfg)
    plain.load_state_dict(reference_model.state_dict())
    x = torch.stack([preprocess_by_hand(i) for i in images(2)])
    with torch.no_grad():
        diff = (plain.encode_image(x) - reference_model.encode_image(x)).abs().max()
    assert diff > 1e-4


def test_clip_scores_pure_function():
    img = np.array([[1.0, 0.0], [1.0, 0.0], [3.0, 4.0]])
    txt = np.array([[2.0, 0.0], [-1.0, 0.0], [4.0, 3.0]])
    np.testing.assert_allclose(clip_scores(img, txt), [100.0, 0.0, 96.0])
    with pytest.raises(ValueError, match="paired"):
        clip_scores(img, txt[:2])


def test_long_prompt_is_truncated_keeping_the_end_of_text_token(weights, reference_model):
    import open_clip

    metric = ClipScore.from_pretrained(weights / VITL14_OPENAI.filename)
    tok = open_clip.get_tokenizer("ViT-L-14")
    long_a = " ".join(["castle"] * 120) + " at dawn"
    long_b = " ".join(["castle"] * 120) + " under the sea, in watercolour"
    ids = tok([long_a])[0]
    assert ids.shape == (77,) and int(ids[-1]) == EOT and int(ids[0]) == 49406
    body = tok.encode(long_a)
    manual = torch.tensor([[49406, *body[:75], EOT]])
    with torch.no_grad():
        expected = reference_model.encode_text(manual)[0].double().numpy()
    got = metric.encoder.encode_texts([long_a])[0].double().numpy()
    np.testing.assert_allclose(got, expected / np.linalg.norm(expected), atol=1e-5)
    # Everything past the cut is dropped: the two long prompts score the same.
    imgs = images(1)
    a, b = metric.score(imgs, [long_a]), metric.score(imgs, [long_b])
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_text_embeddings_are_cached_per_prompt(weights):
    metric = ClipScore.from_pretrained(weights / VITL14_OPENAI.filename)
    metric.encoder.encode_texts(["a", "b", "a", "a"])
    assert sorted(metric.encoder._text_cache) == ["a", "b"]
    first = metric.encoder._text_cache["a"]
    metric.encoder.encode_texts(["a", "c"])
    assert metric.encoder._text_cache["a"] is first and len(metric.encoder._text_cache) == 3


def test_aesthetic_mlp_stays_fp32_under_the_jobs_autocast(weights):
    """The scoring job scores under fp16/bf16 autocast on CUDA; the aesthetic MLP must
    still run in fp32 like the reference (bf16 autocast on CPU shows the same thing: the
    Linear layers would round to 8 mantissa bits)."""
    metric = Aesthetic.from_pretrained(weights)
    features = metric.features(metric.prepare(images(4, seed=5)))
    plain = metric.score_features(features)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = metric.score_features(features)
    np.testing.assert_array_equal(under, plain)


def test_aesthetic_matches_hand_mlp_on_normalised_embedding(weights, reference_model):
    metric = Aesthetic.from_pretrained(weights)  # a folder holding both files
    state = torch.load(weights / AESTHETIC_MLP.filename, weights_only=True)
    assert sorted(state) == sorted(
        f"layers.{i}.{p}" for i in (0, 2, 4, 6, 7) for p in ("weight", "bias")
    )
    assert tuple(state["layers.0.weight"].shape) == (1024, 768)
    imgs = images(4, seed=3)
    hand_img, _ = hand_embeddings(reference_model, imgs, ["x"] * 4)
    numpy_state = {k: v.double().numpy() for k, v in state.items()}
    expected = aesthetic_from_embeddings(hand_img, numpy_state)
    np.testing.assert_allclose(metric.score(imgs), expected, atol=1e-5)
    # The embedding is normalised first: scaling it changes nothing.
    np.testing.assert_allclose(aesthetic_from_embeddings(7.5 * hand_img, numpy_state), expected)
    # A zero embedding stays zero (reference guard): the output is the bias chain alone.
    zero = aesthetic_from_embeddings(np.zeros((1, 768)), numpy_state)
    bias_only = numpy_state["layers.0.bias"]
    for i in (2, 4, 6, 7):
        bias_only = (
            bias_only @ numpy_state[f"layers.{i}.weight"].T + numpy_state[f"layers.{i}.bias"]
        )
    np.testing.assert_allclose(zero, bias_only[:1])


def test_clip_and_aesthetic_share_one_encoder(weights):
    shared: dict = {}
    clip = ClipScore.from_pretrained(weights / VITL14_OPENAI.filename, shared=shared)
    aesthetic = Aesthetic.from_pretrained(
        weights / AESTHETIC_MLP.filename, encoder_weights=weights, shared=shared
    )
    assert clip.encoder is aesthetic.encoder and len(shared) == 1
    assert clip.feature_key == aesthetic.feature_key == clip.preprocess_key


def test_wrong_files_give_clear_errors(weights, tmp_path):
    with pytest.raises(ValueError, match="not the predictor's state dict"):
        Aesthetic.from_pretrained(
            weights / VITL14_OPENAI.filename, encoder_weights=weights / VITL14_OPENAI.filename
        )
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a readable torch file"):
        Aesthetic.from_pretrained(junk, encoder_weights=weights / VITL14_OPENAI.filename)
    with pytest.raises(ValueError, match="does not load into open_clip ViT-L-14"):
        ClipScore.from_pretrained(weights / AESTHETIC_MLP.filename)


def test_missing_weights_name_file_places_and_fix(tmp_path):
    with pytest.raises(MissingWeightsError) as info:
        ClipScore.from_pretrained(tmp_path / "nowhere", sources=WeightSources(tmp_path / "wdir"))
    text = str(info.value)
    assert "open_clip_pytorch_model.bin" in text and "timm/vit_large_patch14_clip_224" in text
    assert str(tmp_path / "nowhere") in text and "--weights clip=" in text


def test_dtype_rules():
    assert parse_dtype("cpu") == torch.float32
    assert parse_dtype("cuda") == torch.float16
    assert parse_dtype("cuda", "bf16") == torch.bfloat16
    with pytest.raises(ValueError, match="needs a CUDA device"):
        parse_dtype("cpu", "fp16")
    with pytest.raises(ValueError, match="not one of"):
        parse_dtype("cuda", "int8")
