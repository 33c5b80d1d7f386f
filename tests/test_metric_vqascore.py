"""VQAScore and the generic VLM loader (scoring/metrics/vlm.py) on tiny random VLMs.

Reference values: ``tests/reference/vqascore.json``, written by t2v-metrics 3.0's own
Qwen2-VL scorer (transformers 4.49, one ``generate`` step per image) on the same tiny
Qwen2-VL in a separate venv (``tests/reference/vqascore_reference.py``). A second code path
here runs the model's forward pass by hand and applies the repetition penalty itself. Other
families (Qwen2.5-VL, LLaVA-1.5) go through the same loader.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from scoring.metrics.base import get_metric
from scoring.metrics.vlm import VisionLanguageModel, model_name
from scoring.metrics.vqascore import DEFAULT_VLM, QUESTION_TEMPLATE, VQAScore, question
from scoring.testing.tiny_vlm import (
    QWEN2VL_REPO,
    REFERENCE_PROMPTS,
    REPETITION_PENALTY,
    reference_cases,
    reference_images,
    tiny_digests,
    write_tiny_qwen2vl,
)
from scoring.testing.tiny_vlm_families import write_tiny_llava, write_tiny_qwen25vl
from scoring.weights import MissingWeightsError, WeightSources

FIXTURE = json.loads(
    (Path(__file__).parent / "reference" / "vqascore.json").read_text(encoding="utf-8")
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_tiny_qwen2vl(tmp_path_factory.mktemp("vqa") / QWEN2VL_REPO)


@pytest.fixture(scope="module")
def metric(folder) -> VQAScore:
    return VQAScore.from_pretrained(folder)


def _cases():
    images = reference_images()
    pairs = reference_cases()
    return [images[i] for i, _ in pairs], [REFERENCE_PROMPTS[p] for _, p in pairs]


def by_hand(vlm: VisionLanguageModel, images, prompts, penalty: float) -> tuple[list, list]:
    """(P(Yes) with the repetition penalty, raw P(Yes)): the forward pass run by hand on
    right-padded single rows, the penalty applied to the row's own token ids."""
    yes = vlm.token_id("Yes")
    with_penalty, raw = [], []
    for image, prompt in zip(images, prompts, strict=True):
        batch = vlm.inputs([[image]], [question(prompt)])
        with torch.no_grad():
            logits = vlm.model(**batch).logits[0, -1].double()
        raw.append(float(torch.softmax(logits, -1)[yes]))
        seen = batch["input_ids"][0].unique()
        picked = logits[seen]
        logits[seen] = torch.where(picked < 0, picked * penalty, picked / penalty)
        with_penalty.append(float(torch.softmax(logits, -1)[yes]))
    return with_penalty, raw


def test_the_tiny_weights_are_the_ones_the_reference_scored():
    assert tiny_digests()["qwen2vl"] == FIXTURE["weights_digest"]
    assert FIXTURE["question_template"].replace("{}", "{prompt}") == QUESTION_TEMPLATE
    assert FIXTURE["repetition_penalty"] == REPETITION_PENALTY


def test_scores_match_t2v_metrics(metric):
    images, prompts = _cases()
    values, details = metric.score_with_details(images, prompts)
    want = np.array([c["p_yes"] for c in FIXTURE["cases"]])
    assert values.dtype == np.float64 and values.shape == want.shape
    np.testing.assert_allclose(values, want, atol=1e-5, rtol=0)
    assert np.ptp(want) > 0.2 and want.min() > 0.3  # Yes/No dominate, and they vary
    p_no = np.array([d["p_no"] for d in details])
    assert np.all(values + p_no <= 1.0) and np.all(values + p_no > 0.9)


def test_inputs_are_the_reference_formatting(metric):
    """Token ids (chat template, question, vision tokens) and pixel patches equal what
    t2v-metrics fed generate: the processor's own resize equals qwen-vl-utils' PIL one."""
    images, prompts = _cases()
    assert metric.yes_id == FIXTURE["yes_token_id"]
    for image, prompt, case in zip(images, prompts, FIXTURE["cases"], strict=True):
        batch = metric.vlm.inputs([[image]], [question(prompt)])
        ids = batch["input_ids"][0].tolist()
        assert len(ids) == case["n_tokens"]
        assert (
            hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()
            == (case["input_ids_sha256"])
        )
        assert batch["image_grid_thw"][0].tolist() == case["image_grid_thw"]
        pixels = batch["pixel_values"].double()
        assert float(pixels.sum()) == pytest.approx(case["pixel_sum"], rel=1e-6)
        assert float(pixels.abs().sum()) == pytest.approx(case["pixel_abs_sum"], rel=1e-6)
        np.testing.assert_allclose(pixels[0, :8].numpy(), case["pixel_first"], atol=1e-6)


def test_chat_text_and_answer_token(metric):
    text = metric.vlm.chat_text(question('a "quoted" {braced} cat'))
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        '<|vision_start|><|image_pad|><|vision_end|>Does this figure show "a "quoted" '
        '{braced} cat"? Please answer yes or no.<|im_end|>\n<|im_start|>assistant\n'
    )
    tokenizer = metric.vlm.processor.tokenizer
    assert tokenizer.convert_ids_to_tokens([metric.yes_id, metric.no_id]) == ["Yes", "No"]
    assert tokenizer.padding_side == "left"


def test_a_second_code_path_gives_the_same_probabilities(metric):
    """model(...) run by hand: the last position's logits, the penalty applied by hand."""
    images, prompts = _cases()
    images, prompts = images[:5], prompts[:5]
    values, details = metric.score_with_details(images, prompts)
    penalised, raw = by_hand(metric.vlm, images, prompts, REPETITION_PENALTY)
    np.testing.assert_allclose(values, penalised, atol=1e-6, rtol=0)
    np.testing.assert_allclose([d["p_yes_raw"] for d in details], raw, atol=1e-6, rtol=0)
    # The penalty matters where the prompt holds "Yes": prompt 2 says "Yes".
    index = next(n for n, p in enumerate(prompts) if '"Yes"' in p)
    assert details[index]["p_yes_raw"] - values[index] > 0.01


def test_batched_left_padding_equals_one_at_a_time(metric):
    """Rows of very different lengths (images of 4 to 475 vision tokens, prompts of 0 to
    50 words) in one left-padded batch score as they do alone, in any order."""
    images, prompts = _cases()
    batched = metric.score(images, prompts)
    order = [3, 8, 1, 6]
    single = [metric.score([images[k]], [prompts[k]])[0] for k in order]
    np.testing.assert_allclose(single, batched[order], atol=1e-5, rtol=0)
    shuffled = metric.score([images[k] for k in order], [prompts[k] for k in order])
    np.testing.assert_allclose(shuffled, batched[order], atol=1e-5, rtol=0)
    assert metric.score([], []).shape == (0,)


def test_registered_version_names_the_vlm(metric, folder, tmp_path):
    assert get_metric("vqascore") is VQAScore
    assert metric.version == "1:Qwen/Qwen2-VL-7B-Instruct" and metric.precision == "fp32"
    with pytest.raises(ValueError, match="one prompt per image"):
        metric.score(reference_images()[:1], None)
    cache = tmp_path / "hub" / "models--Org--Some-VLM" / "snapshots" / "abc123"
    assert model_name(cache) == "Org/Some-VLM"
    assert model_name(tmp_path / "models" / "my-vlm") == "models/my-vlm"


@pytest.mark.parametrize("family", ["qwen2.5-vl", "llava-1.5"])
def test_other_families_through_the_same_loader(family, tmp_path):
    """Qwen2.5-VL and LLaVA-1.5 load through AutoModelForImageTextToText; batched equals
    one at a time and the hand-run forward (their generation configs have no penalty)."""
    write = {"qwen2.5-vl": write_tiny_qwen25vl, "llava-1.5": write_tiny_llava}[family]
    metric = VQAScore.from_pretrained(write(tmp_path / "Org" / family))
    assert metric.version == f"1:Org/{family}"
    images, prompts = _cases()
    images, prompts = images[:4], prompts[:4]
    values, details = metric.score_with_details(images, prompts)
    single = [metric.score([i], [p])[0] for i, p in zip(images, prompts, strict=True)]
    np.testing.assert_allclose(single, values, rtol=1e-5, atol=0)
    _, raw = by_hand(metric.vlm, images, prompts, 1.0)
    np.testing.assert_allclose(values, raw, rtol=1e-5, atol=0)
    np.testing.assert_allclose([d["p_yes_raw"] for d in details], raw, rtol=1e-5, atol=0)
    assert np.all(values > 0) and np.ptp(np.log(values)) > 1e-4


def test_found_through_the_weights_folder(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    root = tmp_path / "weights"
    shutil.copytree(folder, root / DEFAULT_VLM.repo_id)
    metric = VQAScore.from_pretrained(sources=WeightSources(root))
    assert metric.version == "1:Qwen/Qwen2-VL-7B-Instruct"


def test_missing_and_wrong_weights_give_one_clear_error(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(MissingWeightsError) as err:
        VQAScore.from_pretrained(sources=WeightSources(tmp_path / "empty"))
    assert DEFAULT_VLM.repo_id in str(err.value) and "config.json" in str(err.value)

    no_weights = tmp_path / "no_weights"
    shutil.copytree(folder, no_weights, ignore=shutil.ignore_patterns("*.safetensors"))
    with pytest.raises(MissingWeightsError, match=r"has config\.json but no weights"):
        VQAScore.from_pretrained(no_weights)

    no_template = tmp_path / "no_template"
    shutil.copytree(folder, no_template, ignore=shutil.ignore_patterns("chat_template.json"))
    config = json.loads((no_template / "tokenizer_config.json").read_text())
    del config["chat_template"]
    (no_template / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(MissingWeightsError, match="no chat template"):
        VQAScore.from_pretrained(no_template)

    not_a_vlm = tmp_path / "text_only"
    shutil.copytree(folder, not_a_vlm)
    config = json.loads((not_a_vlm / "config.json").read_text())
    config.update(model_type="qwen2", architectures=["Qwen2ForCausalLM"])
    del config["vision_config"]
    (not_a_vlm / "config.json").write_text(json.dumps(config))
    with pytest.raises((ValueError, MissingWeightsError), match="vqascore"):
        VQAScore.from_pretrained(not_a_vlm)


def test_a_half_precision_version_keeps_the_vlm_name(folder, monkeypatch):
    """On CUDA the precision joins the version after the VLM's name (not the class's bare
    version), so bf16 rows of two VLMs stay apart too."""
    import scoring.metrics.base as base

    monkeypatch.setattr(base, "precision_name", lambda device, dtype, reduced: "bf16")
    metric = VQAScore.from_pretrained(folder)
    assert metric.version == "1:Qwen/Qwen2-VL-7B-Instruct+bf16"
