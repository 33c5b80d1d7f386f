"""PickScore: a tiny random transformers CLIPModel (save_pretrained) and a LAION-format processor.

The processor folder is written as the LAION repo ships it: the legacy
``preprocessor_config.json`` and a CLIP BPE tokenizer built offline from
open_clip's bundled vocabulary (the same 49408-token vocabulary). Reference
values: ``model(**inputs).logits_per_image`` of the in-memory model, whose
diagonal is ``logit_scale.exp() · cos`` by construction.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from scoring.metrics.base import get_metric
from scoring.metrics.pickscore import PickScore, load_image_processor, pickscore_scores
from scoring.testing.tiny_scorers import (
    OPENAI_MEAN,
    OPENAI_STD,
    save_pickscore,
    tiny_pickscore_clip,
)
from scoring.testing.tiny_scorers import PICKSCORE_PROCESSOR_REPO as PROC_REPO
from scoring.testing.tiny_scorers import PICKSCORE_REPO as MODEL_REPO
from scoring.weights import MissingWeightsError, WeightSources


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    # A non-default temperature (exp 3.9 ≈ 49), so the test sees it used.
    model = tiny_pickscore_clip(seed=0, logit_scale=3.9)
    root = tmp_path_factory.mktemp("pickscore")
    save_pickscore(model, root)
    return model, root


@pytest.fixture(scope="module")
def metric(weights):
    return PickScore.from_pretrained(weights[1])


def _images():
    rng = np.random.default_rng(1)
    return [
        Image.fromarray(rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)),
        Image.fromarray(rng.integers(0, 256, (240, 180, 3), dtype=np.uint8)),
        Image.fromarray(rng.integers(0, 256, (64, 64, 4), dtype=np.uint8), "RGBA"),
        Image.fromarray(rng.integers(0, 256, (224, 224), dtype=np.uint8), "L"),
    ]


PROMPTS = [
    "1girl, solo, long hair, looking at viewer, smile",
    "a red bicycle",
    "1girl, solo, long hair, looking at viewer, smile",
    " ".join(["very"] * 120) + " long prompt that must be truncated",
]


def test_scores_match_logits_per_image(weights, metric):
    from transformers import AutoTokenizer, CLIPProcessor

    model, root = weights
    got = metric.score(_images(), PROMPTS)

    proc_dir = root / PROC_REPO
    processor = CLIPProcessor(
        image_processor=load_image_processor(proc_dir),
        tokenizer=AutoTokenizer.from_pretrained(proc_dir),
    )
    inputs = processor(
        text=PROMPTS,
        images=_images(),
        padding=True,
        truncation=True,
        max_length=77,
        return_tensors="pt",
    )
    assert inputs["input_ids"].shape[1] == 77  # the long prompt was truncated
    with torch.no_grad():
        logits = model(**inputs).logits_per_image
    want = torch.diagonal(logits).numpy()

    assert got.dtype == np.float64 and got.shape == (4,)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    # The documented identity: logits / logit_scale.exp() is the cosine.
    cosines = want / float(model.logit_scale.detach().exp())
    assert np.all(np.abs(cosines) <= 1.0)
    assert not np.allclose(got, cosines)  # the temperature (exp 3.9 ≈ 49) is applied
    single = np.array(
        [metric.score([im], [p])[0] for im, p in zip(_images(), PROMPTS, strict=True)]
    )
    np.testing.assert_allclose(got, single, atol=1e-5, rtol=0)


def test_preprocessing_is_shortest_side_and_centre_crop(metric):
    # 448 x 224: the short side is already 224, so the crop keeps columns 112..335.
    rng = np.random.default_rng(2)
    arr = rng.integers(0, 256, (224, 448, 3), dtype=np.uint8)
    pixels = metric.prepare([Image.fromarray(arr)])[0].numpy()
    crop = arr[:, 112:336].transpose(2, 0, 1) / 255.0
    want = (crop - np.array(OPENAI_MEAN)[:, None, None]) / np.array(OPENAI_STD)[:, None, None]
    assert pixels.shape == (3, 224, 224)
    np.testing.assert_allclose(pixels, want, atol=1e-5)


def test_preprocessing_resizes_shortest_side_bicubic(metric):
    # 112 x 336 (W x H): bicubic to 224 x 672, then the central 224 rows.
    rng = np.random.default_rng(3)
    image = Image.fromarray(rng.integers(0, 256, (336, 112, 3), dtype=np.uint8))
    resized = np.asarray(image.resize((224, 672), Image.BICUBIC), dtype=np.float64)
    crop = resized[224:448].transpose(2, 0, 1) / 255.0
    want = (crop - np.array(OPENAI_MEAN)[:, None, None]) / np.array(OPENAI_STD)[:, None, None]
    np.testing.assert_allclose(metric.prepare([image])[0].numpy(), want, atol=1e-5)


def test_pickscore_scores_math():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    cos = np.array([a[i] @ b[i] / np.linalg.norm(a[i]) / np.linalg.norm(b[i]) for i in range(6)])
    np.testing.assert_allclose(pickscore_scores(a, b, np.log(100.0)), 100.0 * cos, rtol=1e-12)
    np.testing.assert_allclose(pickscore_scores(2 * a, b, 0.0), cos, rtol=1e-12)
    with pytest.raises(ValueError, match="paired"):
        pickscore_scores(a, b.T, 0.0)


def test_registered_and_needs_prompts(metric):
    assert get_metric("pickscore") is PickScore
    with pytest.raises(ValueError, match="one prompt per image"):
        metric.score(_images(), None)
    assert metric.score([], []).shape == (0,)


def test_folders_passed_separately_and_bin_weights(weights, metric, tmp_path):
    model, root = weights
    model_dir = tmp_path / "pick"
    model_dir.mkdir()
    (model_dir / "config.json").write_text((root / MODEL_REPO / "config.json").read_text())
    torch.save(model.state_dict(), model_dir / "pytorch_model.bin")
    loaded = PickScore.from_pretrained(model_dir, processor=root / PROC_REPO)
    image, prompt = _images()[:1], PROMPTS[:1]
    np.testing.assert_allclose(loaded.score(image, prompt), metric.score(image, prompt), atol=1e-5)


def test_missing_weights_name_the_files(weights, tmp_path, monkeypatch):
    _, root = weights
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(MissingWeightsError) as err:
        PickScore.from_pretrained(sources=WeightSources(tmp_path / "weights"))
    assert "config.json" in str(err.value) and MODEL_REPO in str(err.value)

    # The model is there but the LAION processor is not: the error names the processor.
    only_model = tmp_path / "only_model"
    (only_model / MODEL_REPO).mkdir(parents=True)
    for f in (root / MODEL_REPO).iterdir():
        (only_model / MODEL_REPO / f.name).write_bytes(f.read_bytes())
    with pytest.raises(MissingWeightsError) as err:
        PickScore.from_pretrained(only_model)
    assert "preprocessor_config.json" in str(err.value) and PROC_REPO in str(err.value)

    # config.json without the weights file.
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text("{}")
    with pytest.raises(MissingWeightsError, match=r"model\.safetensors or pytorch_model\.bin"):
        PickScore.from_pretrained(bare, processor=root / PROC_REPO)


def test_preprocessor_is_picklable_for_worker_processes(metric):
    import pickle

    fn = pickle.loads(pickle.dumps(metric.preprocessor()))
    image = _images()[0]
    assert torch.equal(fn(image), metric.preprocessor()(image))
    batch = metric.prepare(_images())
    assert tuple(batch.shape) == (4, 3, 224, 224)
    values, details = metric.score_with_details(batch, PROMPTS)
    assert details is None
    np.testing.assert_allclose(values, metric.score(_images(), PROMPTS), atol=1e-6)


def test_prompts_are_encoded_once_per_job(weights):
    """A job meets each prompt in many batches: its text embedding is computed once and
    reused, and the scores equal a fresh metric's."""
    fresh = PickScore.from_pretrained(weights[1]).score(_images()[2:], PROMPTS[2:])
    metric = PickScore.from_pretrained(weights[1])
    first = metric.score(_images(), PROMPTS)
    assert sorted(metric.prompt_cache.rows) == sorted(set(PROMPTS))
    kept = metric.prompt_cache.rows[PROMPTS[0]]
    again = metric.score(_images()[2:], PROMPTS[2:])
    assert metric.prompt_cache.rows[PROMPTS[0]] is kept and len(metric.prompt_cache.rows) == 3
    np.testing.assert_allclose(again, first[2:], atol=1e-6)
    np.testing.assert_allclose(again, fresh, atol=1e-6)
