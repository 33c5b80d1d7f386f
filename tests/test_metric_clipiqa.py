"""CLIP-IQA against torchmetrics' ``CLIPImageQualityAssessment`` on the same tiny weights.

The arena runs the tiny open_clip ViT-L/14-family CLIP of ``tiny_clip`` (what CLIP score
and aesthetic load); torchmetrics runs the same weights converted to a transformers
``CLIPModel`` (``scoring.testing.tiny_iqa``) with a CLIP processor of the same size.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from sqlalchemy import select

from scoring.metrics.base import get_metric
from scoring.metrics.clip_score import ClipScore
from scoring.metrics.clipiqa import QUALITY_PROMPTS, ClipIQA, clipiqa_scores
from scoring.metrics.openai_clip import VITL14_OPENAI
from scoring.metrics.runner import build_metrics
from scoring.testing.tiny_clip import TINY_MODEL_CFG, write_tiny_aesthetic, write_tiny_clip
from scoring.testing.tiny_iqa import hf_clip_from_open_clip, save_hf_clip
from scoring.weights import MissingWeightsError, WeightSources

SIZE = TINY_MODEL_CFG["vision_cfg"]["image_size"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip")
    write_tiny_clip(folder)
    write_tiny_aesthetic(folder)
    return folder


@pytest.fixture(scope="module")
def metric(weights):
    return ClipIQA.from_pretrained(weights)


@pytest.fixture(scope="module")
def hf_folder(metric, tmp_path_factory):
    hf = hf_clip_from_open_clip(metric.encoder.model, TINY_MODEL_CFG)
    return save_hf_clip(hf, tmp_path_factory.mktemp("hf"), SIZE)


def torchmetrics_reference(folder):
    """torchmetrics' metric on the converted model: its anchors, normalisation, 100x and
    softmax; transformers' CLIPProcessor with the PIL image processor (OpenAI's
    ``clip.load`` resize; transformers 5's default torchvision backend antialiases
    differently). torchmetrics 1.9 expects ``get_*_features`` to return tensors, as
    transformers 4 did; transformers 5 returns model outputs, so the class below hands
    back their ``pooler_output`` (the same tensor) and changes nothing else."""
    from torchmetrics.multimodal import CLIPImageQualityAssessment
    from transformers import AutoTokenizer, CLIPModel, CLIPProcessor

    from scoring.metrics.pickscore import load_image_processor

    class FeaturesAsTensors(CLIPModel):
        def get_text_features(self, *args, **kwargs):
            out = super().get_text_features(*args, **kwargs)
            return out if torch.is_tensor(out) else out.pooler_output

        def get_image_features(self, *args, **kwargs):
            out = super().get_image_features(*args, **kwargs)
            return out if torch.is_tensor(out) else out.pooler_output

    model = FeaturesAsTensors.from_pretrained(folder).eval()
    processor = CLIPProcessor(
        image_processor=load_image_processor(folder),
        tokenizer=AutoTokenizer.from_pretrained(folder),
    )
    return CLIPImageQualityAssessment(model_name_or_path=lambda: (model, processor))


def as_tensor(arrays: list[np.ndarray]) -> torch.Tensor:
    """(n, 3, h, w) float in 0..255 with data_range 1, as torchmetrics' own examples: the
    CLIP processor rescales by 1/255 itself (floats in 0..1 would be rescaled twice)."""
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()


# Shapes whose centre-crop margin is even or 1 mod 4 (the two crops agree; see below).
SHAPES = [(32, 32), (40, 48), (48, 40), (32, 45), (64, 96), (20, 30)]


@pytest.mark.parametrize(("height", "width"), SHAPES)
def test_matches_torchmetrics_on_the_same_weights(metric, hf_folder, height, width):
    rng = np.random.default_rng(height * 100 + width)
    arrays = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(4)]
    arrays[1][: height // 2] = 255  # very different images: scores far apart
    arrays[2] = (arrays[2] // 8).astype(np.uint8)
    reference = torchmetrics_reference(hf_folder)
    want = reference(as_tensor(arrays)).double().numpy()
    got = metric.score([Image.fromarray(a) for a in arrays])
    assert got.dtype == np.float64 and got.shape == (4,)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert np.ptp(got) > 1e-3
    print(f"clipiqa vs torchmetrics {height}x{width}: max |diff| {np.abs(got - want).max():.1e}")


def test_crops_differ_from_transformers_by_one_pixel_where_the_margin_is_3_mod_4(metric, hf_folder):
    """A 32 x 35 image: margin 3; OpenAI's crop starts at round(1.5) = 2, transformers'
    at 3 // 2 = 1 (the documented departure from torchmetrics' preprocessing)."""
    from scoring.metrics.pickscore import load_image_processor

    rng = np.random.default_rng(9)
    image = Image.fromarray(rng.integers(0, 256, (32, 35, 3), dtype=np.uint8))
    ours = metric.encoder.preprocess(image)
    theirs = load_image_processor(hf_folder)(images=[image], return_tensors="pt")
    theirs = theirs["pixel_values"][0]
    assert not torch.allclose(ours, theirs, atol=1e-3)
    torch.testing.assert_close(ours[:, :, :-1], theirs[:, :, 1:], atol=1e-6, rtol=0)


def test_clipiqa_scores_is_the_softmax_of_100_cos():
    rng = np.random.default_rng(1)
    img, anchors = rng.normal(size=(5, 8)), rng.normal(size=(2, 8))
    cos = (img / np.linalg.norm(img, axis=1, keepdims=True)) @ (
        anchors / np.linalg.norm(anchors, axis=1, keepdims=True)
    ).T
    want = np.exp(100 * cos[:, 0]) / np.exp(100 * cos).sum(axis=1)
    np.testing.assert_allclose(clipiqa_scores(img, anchors), want, rtol=1e-12)
    np.testing.assert_allclose(clipiqa_scores(3 * img, anchors * 2), want, rtol=1e-12)
    np.testing.assert_allclose(clipiqa_scores(img, anchors[::-1]), 1 - want, atol=1e-15)
    far = clipiqa_scores(np.array([[1.0, 0.0]]), np.array([[1.0, 0.0], [-1.0, 0.0]]))
    assert far[0] == 1.0 and not np.isnan(far).any()  # a gap of 200 logits: no overflow
    with pytest.raises(ValueError, match=r"\(2, d\) anchor"):
        clipiqa_scores(img, rng.normal(size=(3, 8)))


def test_the_anchors_are_the_quality_prompts(metric):
    assert QUALITY_PROMPTS == ("Good photo.", "Bad photo.")
    want = metric.encoder.encode_texts(["Good photo.", "Bad photo."]).numpy()
    np.testing.assert_array_equal(metric.anchors(), want)
    np.testing.assert_allclose(np.linalg.norm(metric.anchors(), axis=1), 1.0, rtol=1e-6)


def test_batched_equals_one_by_one_on_non_square_images(metric):
    rng = np.random.default_rng(2)
    shapes = [(30, 50), (64, 20), (32, 32), (17, 40)]
    images = [Image.fromarray(rng.integers(0, 256, (*s, 3), dtype=np.uint8)) for s in shapes]
    single = np.array([metric.score([im])[0] for im in images])
    np.testing.assert_allclose(metric.score(images), single, rtol=0, atol=1e-6)
    assert metric.score([]).shape == (0,)


def test_registered_reduced_precision_and_named_backbone(metric, weights):
    assert get_metric("clipiqa") is ClipIQA
    assert not ClipIQA.needs_prompt and ClipIQA.higher_is_better and ClipIQA.reduced_precision
    assert ClipIQA.version.startswith("vit-l-14-openai.") and metric.version == ClipIQA.version
    assert ClipIQA.weight_files == (VITL14_OPENAI,)
    with pytest.raises(ValueError, match="needs a CUDA device"):
        ClipIQA.from_pretrained(weights, device="cpu", dtype="fp16")


def test_shares_the_encoder_of_clip_score_and_aesthetic(weights):
    """The path given for clip is CLIP-IQA's too: one encoder, one feature key."""
    wanted = ["clip", "aesthetic", "clipiqa"]
    given = {"clip": str(weights), "aesthetic": str(weights)}  # clipiqa: none of its own
    clip, aesthetic, iqa = build_metrics(wanted, weights=given)
    assert iqa.encoder is clip.encoder is aesthetic.encoder
    assert iqa.feature_key == clip.feature_key and iqa.preprocess_key == clip.preprocess_key
    alone = ClipIQA.from_pretrained(weights)
    assert alone.encoder is not clip.encoder  # without a shared dict: its own copy
    image = Image.new("RGB", (40, 30), (200, 30, 90))
    np.testing.assert_allclose(iqa.score([image]), alone.score([image]), rtol=0, atol=1e-7)
    assert isinstance(clip, ClipScore)


def test_missing_and_wrong_weights_give_the_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(MissingWeightsError) as err:
        ClipIQA.from_pretrained(sources=WeightSources(tmp_path / "weights"))
    message = str(err.value)
    assert "metric 'clipiqa'" in message and VITL14_OPENAI.filename in message
    assert VITL14_OPENAI.repo_id in message and "--weights clipiqa=" in message
    bad = tmp_path / "bad"
    bad.mkdir()
    torch.save({"not": torch.zeros(2)}, bad / VITL14_OPENAI.filename)
    with pytest.raises(ValueError, match="does not load into open_clip ViT-L-14"):
        ClipIQA.from_pretrained(bad)


def test_the_job_runs_one_image_tower_pass_for_clip_and_clipiqa(store, weights):
    """Through the runner: one encoder pass per batch serves both metrics, and the stored
    CLIP-IQA values are the direct ones."""
    from arena.storage import db
    from arena.storage.store import PromptRow
    from scoring.metrics.runner import run

    rng = np.random.default_rng(6)
    model = store.add_model("alpha", "import")
    store.add_prompts([PromptRow(f"prompt {k}", str(k)) for k in range(5)], "set")
    images = []
    for k in range(5):
        image = Image.fromarray(rng.integers(0, 256, (24 + 6 * k, 40, 3), dtype=np.uint8))
        images.append(image)
        pid = store.prompt_ids("set")[("set", str(k))]
        store.add_image(model, pid, store.images.put_image(image), seed=k)
    clip, iqa = build_metrics(["clip", "clipiqa"], weights={"clip": str(weights)})
    calls = []
    handle = clip.encoder.model.visual.register_forward_hook(
        lambda _m, inp, _out: calls.append(inp[0].shape[0])
    )
    try:
        run(store, [clip, iqa], batch_size=3, num_workers=0, progress=False)
    finally:
        handle.remove()
    assert calls == [3, 2]
    with store.session() as s:
        stored = s.scalars(
            select(db.Score.value).where(db.Score.metric == "clipiqa").order_by(db.Score.image_id)
        ).all()
    np.testing.assert_allclose(stored, ClipIQA.from_pretrained(weights).score(images), atol=1e-6)
