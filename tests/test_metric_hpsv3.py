"""HPSv3: a tiny random Qwen2-VL saved as MizzenAI/HPSv3 and Qwen/Qwen2-VL-7B-Instruct save
theirs (scoring/testing/tiny_vlm.py), loaded through the real ``from_pretrained``.

Reference values: ``tests/reference/hpsv3.json``, written by the ``hpsv3`` package itself
(transformers 4.45.2, its own model class and formatting) on the same tiny weights in a
separate venv (``tests/reference/hpsv3_reference.py``).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from scoring.metrics.base import auto_dtype, get_metric
from scoring.metrics.hpsv3 import (
    BASE,
    CHECKPOINT,
    HPSv3,
    conversation,
    pixels,
    resize_image,
    smart_resize,
)
from scoring.testing.tiny_vlm import (
    HPSV3_FILE,
    HPSV3_REPO,
    QWEN2VL_REPO,
    REFERENCE_PROMPTS,
    reference_cases,
    reference_images,
    tiny_digests,
    write_tiny_vlm_weights,
)
from scoring.weights import MissingWeightsError, WeightSources

FIXTURE = json.loads(
    (Path(__file__).parent / "reference" / "hpsv3.json").read_text(encoding="utf-8")
)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hpsv3")
    write_tiny_vlm_weights(root)
    return root


@pytest.fixture(scope="module")
def metric(root) -> HPSv3:
    return HPSv3.from_pretrained(root)


@pytest.fixture(scope="module")
def cases(metric):
    """The fixture's (image, prompt) pairs, preprocessed."""
    images = reference_images()
    pairs = reference_cases()
    inputs = metric.prepare([images[i] for i, _ in pairs])
    return inputs, [REFERENCE_PROMPTS[p] for _, p in pairs]


def test_the_tiny_weights_are_the_ones_the_reference_scored():
    assert tiny_digests() == FIXTURE["weights_digest"]
    assert [c["image"] for c in FIXTURE["cases"]] == [i for i, _ in reference_cases()]


def test_rewards_match_the_hpsv3_package(metric, cases):
    inputs, prompts = cases
    values, details = metric.score_with_details(inputs, prompts)
    want = np.array([c["mean"] for c in FIXTURE["cases"]])
    assert values.dtype == np.float64 and values.shape == want.shape
    np.testing.assert_allclose(values, want, atol=1e-5, rtol=0)
    log_sigma = np.array([d["log_sigma"] for d in details])
    np.testing.assert_allclose(log_sigma, [c["log_sigma"] for c in FIXTURE["cases"]], atol=1e-5)
    assert [d["sigma"] for d in details] == pytest.approx(np.exp(log_sigma).tolist())
    assert np.ptp(want) > 0.05  # the cases differ by far more than the tolerance


def test_tokens_and_pixels_are_the_reference_formatting(metric, cases):
    """Token ids (chat template, instruction, <|Reward|>, image placeholders) and the
    pixel patches equal what the package's prepare_batch made."""
    inputs, prompts = cases
    batch = metric.encode(inputs, prompts)
    assert metric.reward_id == FIXTURE["reward_token_id"][0]
    assert metric.processor.tokenizer.padding_side == FIXTURE["padding_side"] == "right"
    start = 0
    for n, case in enumerate(FIXTURE["cases"]):
        ids = batch["input_ids"][n][batch["attention_mask"][n].bool()].tolist()
        assert len(ids) == case["n_tokens"]
        assert (
            hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()
            == (case["input_ids_sha256"])
        )
        grid = batch["image_grid_thw"][n]
        assert grid.tolist() == case["image_grid_thw"]
        patches = batch["pixel_values"][start : start + int(grid.prod())].double()
        start += int(grid.prod())
        assert float(patches.sum()) == pytest.approx(case["pixel_sum"], rel=1e-6)
        assert float(patches.abs().sum()) == pytest.approx(case["pixel_abs_sum"], rel=1e-6)
        np.testing.assert_allclose(patches[0, :8].numpy(), case["pixel_first"], atol=1e-6)


def test_template_text(metric):
    """The processor's chat template is the reference's (same rendering of a bare turn), and
    the instruction sits between the image and the generation prompt."""
    bare = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "{prompt}"}]}]
    rendered = metric.processor.apply_chat_template(
        [bare], tokenize=False, add_generation_prompt=True
    )[0]
    assert hashlib.sha256(rendered.encode()).hexdigest() == FIXTURE["chat_template_sha256"]
    text = metric.processor.apply_chat_template(
        [conversation("a {braced} cat")], tokenize=False, add_generation_prompt=True
    )[0]
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")
    assert "<|vision_start|><|image_pad|><|vision_end|>\nYou are tasked with" in text
    assert text.endswith(
        "Textual prompt - a {braced} cat\n\n\n\nPlease provide the overall ratings of this "
        "image: <|Reward|>\n\nEND\n<|im_end|>\n<|im_start|>assistant\n"
    )


def test_batched_equals_one_at_a_time_in_any_order(metric, cases):
    inputs, prompts = cases
    batched = metric.score_inputs(inputs, prompts)
    order = [5, 0, 11]
    single = [metric.score_inputs([inputs[k]], [prompts[k]])[0] for k in order]
    np.testing.assert_allclose(single, batched[order], atol=1e-5, rtol=0)
    shuffled = metric.score_inputs([inputs[k] for k in order], [prompts[k] for k in order])
    np.testing.assert_allclose(shuffled, batched[order], atol=1e-5, rtol=0)
    # the public score() on PIL images is the same path
    i, p = reference_cases()[1]
    assert metric.score([reference_images()[i]], [REFERENCE_PROMPTS[p]])[0] == pytest.approx(
        batched[1], abs=1e-5
    )


def test_plain_positions_are_what_the_model_was_trained_with(metric, cases):
    """The reference calls the decoder without position_ids (every M-RoPE axis 0..n-1);
    Qwen2-VL's own 3-D image positions give other rewards."""
    inputs, prompts = cases
    batch = metric.encode(inputs[:2], prompts[:2])
    rows, cols = (batch["input_ids"] == metric.reward_id).nonzero(as_tuple=True)
    with torch.no_grad():
        position_ids, _ = metric.model.get_rope_index(
            batch["input_ids"],
            image_grid_thw=batch["image_grid_thw"],
            attention_mask=batch["attention_mask"],
            mm_token_type_ids=(batch["input_ids"] == metric.processor.image_token_id).int(),
        )
        hidden = metric.model(**batch, position_ids=position_ids).last_hidden_state
        mrope = metric.head(hidden[rows, cols].float())[:, 0].double().numpy()
    plain = metric.score_inputs(inputs[:2], prompts[:2])
    assert np.abs(mrope - plain).max() > 1e-3


def test_smart_resize_rule():
    assert smart_resize(1024, 1024) == (448, 448)
    assert smart_resize(512, 512) == (448, 448)  # 504 x 504 is over the ceiling
    assert smart_resize(48, 64) == (392, 532)  # scaled up to the floor of 256*28*28
    assert smart_resize(1344, 768) == (588, 336)
    for h, w in [(200, 300), (301, 97), (90, 270), (700, 520), (1, 150)]:
        rh, rw = smart_resize(h, w)
        assert rh % 28 == 0 and rw % 28 == 0
        assert abs(math.log((rh / rw) / (h / w))) < 0.2 or min(h, w) < 28
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(10, 2100)


def test_preprocessing_resizes_non_square_images_with_pil_bicubic(metric):
    from PIL import Image

    image = reference_images()[1]  # 97 x 301
    resized = resize_image(image)
    assert resized.size[::-1] == smart_resize(301, 97)
    want = image.resize(resized.size, Image.Resampling.BICUBIC)
    assert np.array_equal(np.asarray(resized), np.asarray(want))
    out = pixels(metric.processor.image_processor, image)
    h, w = smart_resize(301, 97)
    assert out["image_grid_thw"].tolist() == [1, h // 14, w // 14]
    assert tuple(out["pixel_values"].shape) == (h * w // 196, 3 * 2 * 14 * 14)
    gray = image.convert("L")  # any mode is converted to RGB first
    assert resize_image(gray).mode == "RGB"


def test_prompts_that_would_break_the_format_get_nan(metric, cases):
    inputs, _ = cases
    prompts = ["fine", "a <|Reward|> in it", "an <|image_pad|> in it"]
    values, details = metric.score_with_details(inputs[:3], prompts)
    assert not math.isnan(values[0]) and "log_sigma" in details[0]
    assert math.isnan(values[1]) and math.isnan(values[2])
    assert "<|Reward|>" in details[1]["skipped"]
    assert metric.score_with_details([], []) == (pytest.approx(np.zeros(0)), [None] * 0)


def test_registered_needs_prompts_and_precision(metric):
    assert get_metric("hpsv3") is HPSv3
    assert HPSv3.reduced_precision and HPSv3.auto_half == "bf16"
    assert metric.version == "v3" and metric.precision == "fp32"
    with pytest.raises(ValueError, match="one prompt per image"):
        metric.score(reference_images()[:1], None)
    assert auto_dtype("cuda", None, "bf16", capability=9) == "bf16"
    assert auto_dtype("cuda:1", None, "bf16", capability=7) is None  # no bf16 before Ampere
    assert auto_dtype("cuda", "fp16", "bf16", capability=9) == "fp16"  # explicit wins
    assert auto_dtype("cpu", None, "bf16", capability=9) is None
    assert auto_dtype("cuda", None, "fp16", capability=9) is None


def test_weights_found_in_the_weights_folder_and_bf16_checkpoints(root, cases, tmp_path):
    """The published checkpoint is bf16: it loads (into fp32 on the CPU) and the rewards
    move only by bf16 rounding. Found through WeightSources like every other metric."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "w"
    shutil.copytree(root / QWEN2VL_REPO, folder / QWEN2VL_REPO)
    state = load_file(str(root / HPSV3_REPO / HPSV3_FILE))
    (folder / HPSV3_REPO).mkdir(parents=True)
    save_file(
        {k: v.to(torch.bfloat16) for k, v in state.items()},
        str(folder / HPSV3_REPO / HPSV3_FILE),
    )
    metric = HPSv3.from_pretrained(sources=WeightSources(folder))
    assert next(metric.model.parameters()).dtype == torch.float32
    inputs, prompts = cases
    got = metric.score_inputs(inputs[:4], prompts[:4])
    want = [c["mean"] for c in FIXTURE["cases"][:4]]
    np.testing.assert_allclose(got, want, atol=0.05)


def test_missing_and_wrong_weights_give_one_clear_error(root, tmp_path, monkeypatch):
    from safetensors.torch import load_file, save_file

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(MissingWeightsError) as err:
        HPSv3.from_pretrained(sources=WeightSources(tmp_path / "empty"))
    assert CHECKPOINT.filename in str(err.value) and CHECKPOINT.repo_id in str(err.value)

    only_checkpoint = tmp_path / "only"
    (only_checkpoint / HPSV3_REPO).mkdir(parents=True)
    shutil.copy(root / HPSV3_REPO / HPSV3_FILE, only_checkpoint / HPSV3_REPO / HPSV3_FILE)
    with pytest.raises(MissingWeightsError) as err:
        HPSv3.from_pretrained(only_checkpoint)
    assert BASE.repo_id in str(err.value) and "config.json" in str(err.value)

    not_safetensors = tmp_path / "bad" / HPSV3_FILE
    not_safetensors.parent.mkdir()
    not_safetensors.write_bytes(b"not a safetensors file" * 10)
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        HPSv3.from_pretrained(not_safetensors, processor=root / QWEN2VL_REPO)

    # The Qwen2-VL model's own weights are not an HPSv3 checkpoint.
    with pytest.raises(ValueError, match="not an HPSv3 checkpoint"):
        HPSv3.from_pretrained(
            root / QWEN2VL_REPO / "model.safetensors", processor=root / QWEN2VL_REPO
        )

    # A checkpoint whose vocabulary does not fit the tokenizer (+ <|Reward|>).
    state = load_file(str(root / HPSV3_REPO / HPSV3_FILE))
    for key in ("model.embed_tokens.weight", "lm_head.weight"):
        state[key] = state[key][:-1].clone()
    save_file(state, str(tmp_path / "short.safetensors"))
    with pytest.raises(ValueError, match="vocabulary has"):
        HPSv3.from_pretrained(tmp_path / "short.safetensors", processor=root / QWEN2VL_REPO)

    # A folder without its tokenizer files.
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(root / QWEN2VL_REPO / "config.json", bare / "config.json")
    with pytest.raises(MissingWeightsError, match="could not load the processor"):
        HPSv3.from_pretrained(root / HPSV3_REPO / HPSV3_FILE, processor=bare)
