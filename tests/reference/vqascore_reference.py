"""VQAScores of the reference ``t2v-metrics`` package on the tiny Qwen2-VL.

Writes ``tests/reference/vqascore.json``, which ``tests/test_metric_vqascore.py`` compares
our metric with (within 1e-5). Never imported by the tests: t2v-metrics 3.0 pins
transformers==4.49.0, torch==2.5.1, numpy==1.26.4, apex, deepspeed and ~60 more, so it
runs in a separate venv, installed without its dependency list:

    python3.11 -m venv /tmp/ref-vqa-venv
    /tmp/ref-vqa-venv/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
    /tmp/ref-vqa-venv/bin/pip install torchvision==0.28.0 transformers==4.49.0 \
        qwen-vl-utils==0.0.11 pillow==12.3.0 "numpy<2" safetensors regex
    /tmp/ref-vqa-venv/bin/pip install --no-deps t2v-metrics==3.0
    /tmp/ref-vqa-venv/bin/python tests/reference/vqascore_reference.py tests/reference/vqascore.json

(The fixture was made exactly so, on CPU: the versions are recorded in it.)

What runs is the package's own code, unmodified: ``Qwen2VLModel.forward`` of
``t2v_metrics/models/vqascore_models/qwen2vl_model.py`` -- its image loading, the chat
message, ``apply_chat_template``, qwen-vl-utils' ``process_vision_info``, the processor,
``generate(max_new_tokens=1, do_sample=False, output_scores=True)`` and the softmax of the
first step's scores at ``tokenizer.encode("Yes")[0]`` -- called with the paper's question
template. Set up around it, and only that:

* the package's ``__init__`` imports every model family (LAVIS, LLaVA, ...) and their
  dependencies, so ``t2v_metrics``, ``t2v_metrics.models`` and
  ``t2v_metrics.models.vqascore_models`` are registered as bare packages over the installed
  folders; ``decord`` (video only) is a stub module;
* ``load_model`` asks for flash-attention-2 and ``device_map="auto"``, which a CPU lacks,
  so the object is made without ``__init__`` and given the model (loaded as ``load_model``
  does, with SDPA and fp32) and the processor of the tiny folder.

The weights come from ``scoring.testing.tiny_vlm`` (torch only); their digest is stored.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
import tempfile
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from scoring import _compat  # noqa: E402,F401  (CUDA-only torchvision wheel on CPU torch)
from scoring.testing.tiny_vlm import (  # noqa: E402
    REFERENCE_PROMPTS,
    reference_cases,
    reference_images,
    tiny_digests,
    write_tiny_qwen2vl,
)

QUESTION = 'Does this figure show "{}"? Please answer yes or no.'


def import_reference():
    """t2v-metrics' Qwen2-VL module, without the package's ``__init__`` files."""
    spec = importlib.util.find_spec("t2v_metrics")
    root = Path(next(iter(spec.submodule_search_locations)))
    for name, path in (
        ("t2v_metrics", root),
        ("t2v_metrics.models", root / "models"),
        ("t2v_metrics.models.vqascore_models", root / "models" / "vqascore_models"),
    ):
        package = types.ModuleType(name)
        package.__path__ = [str(path)]
        sys.modules[name] = package
    sys.modules["decord"] = types.SimpleNamespace(VideoReader=None, cpu=None)
    from t2v_metrics.models.vqascore_models import qwen2vl_model

    return qwen2vl_model


def main(out: str) -> None:
    import importlib.metadata as md

    import torch
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    torch.set_num_threads(1)
    reference = import_reference()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = write_tiny_qwen2vl(root / "Qwen" / "Qwen2-VL-7B-Instruct")
        paths = []
        for i, image in enumerate(reference_images()):
            path = root / f"image{i}.png"
            image.save(path)
            paths.append(str(path))
        scorer = reference.Qwen2VLModel.__new__(reference.Qwen2VLModel)
        scorer.model_name = "qwen2-vl-7b"
        scorer.model_info = reference.QWEN2_VL_MODELS["qwen2-vl-7b"]
        scorer.model = Qwen2VLForConditionalGeneration.from_pretrained(
            folder, torch_dtype=torch.float32, attn_implementation="sdpa"
        ).eval()
        scorer.processor = AutoProcessor.from_pretrained(folder)
        scorer.device = torch.device("cpu")
        cases = reference_cases()
        scores = scorer.forward(
            [paths[i] for i, _ in cases],
            [REFERENCE_PROMPTS[p] for _, p in cases],
            question_template=QUESTION,
            answer_template="Yes",
        ).double()
        tokenizer = scorer.processor.tokenizer
        yes_id = tokenizer.encode("Yes")[0]
        # What forward feeds generate, for the formatting checks of the test.
        inputs = []
        for i, p in cases:
            data = scorer.load_images([paths[i]])[0]
            messages = [
                {
                    "role": "user",
                    "content": [
                        data,
                        {"type": "text", "text": QUESTION.format(REFERENCE_PROMPTS[p])},
                    ],
                }
            ]
            text = scorer.processor.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
            image_inputs, _ = reference.process_vision_info(messages)
            batch = scorer.processor(text=[text], images=image_inputs, return_tensors="pt")
            pixels = batch["pixel_values"].double()
            inputs.append(
                {
                    "n_tokens": batch["input_ids"].shape[1],
                    "input_ids_sha256": hashlib.sha256(
                        ",".join(map(str, batch["input_ids"][0].tolist())).encode()
                    ).hexdigest(),
                    "image_grid_thw": batch["image_grid_thw"][0].tolist(),
                    "pixel_sum": float(pixels.sum()),
                    "pixel_abs_sum": float(pixels.abs().sum()),
                    "pixel_first": pixels[0, :8].tolist(),
                }
            )
    rows = [
        {"image": i, "prompt": p, "p_yes": float(scores[n]), **inputs[n]}
        for n, (i, p) in enumerate(cases)
    ]
    versions = {
        name: md.version(name)
        for name in ("t2v-metrics", "torch", "torchvision", "transformers", "tokenizers")
    }
    versions.update({name: md.version(name) for name in ("qwen-vl-utils", "pillow", "numpy")})
    payload = {
        "made_by": "tests/reference/vqascore_reference.py (see its docstring)",
        "versions": versions,
        "python": sys.version.split()[0],
        "weights_digest": tiny_digests()["qwen2vl"],
        "question_template": QUESTION,
        "yes_token_id": yes_id,
        "repetition_penalty": scorer.model.generation_config.repetition_penalty,
        "cases": rows,
    }
    Path(out).write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}: {len(rows)} scores")


if __name__ == "__main__":
    main(str(Path(sys.argv[1]).resolve()))
