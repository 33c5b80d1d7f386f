"""Rewards of the reference ``hpsv3`` package on the tiny HPSv3 weights.

Writes ``tests/reference/hpsv3.json``, which ``tests/test_metric_hpsv3.py`` compares our
metric with (within 1e-5). Never imported by the tests: the package pins
transformers==4.45.2 (the project runs 5.x) and imports trl, peft, datasets and
tensorboard at import time, so it runs in a separate venv:

    python3.11 -m venv /tmp/ref-vlm-venv
    /tmp/ref-vlm-venv/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
    /tmp/ref-vlm-venv/bin/pip install torchvision==0.28.0 transformers==4.45.2 trl==0.11.4 \
        peft==0.13.2 accelerate==1.0.1 datasets tensorboard fire matplotlib pandas pyyaml \
        omegaconf requests safetensors einops "numpy<2"
    /tmp/ref-vlm-venv/bin/pip install --no-deps hpsv3==1.0.0
    /tmp/ref-vlm-venv/bin/python tests/reference/hpsv3_reference.py tests/reference/hpsv3.json

(The fixture was made exactly so, on CPU: the versions are recorded in it.)

What runs is the package's own code, unmodified: ``hpsv3.HPSv3RewardInferencer`` -- its
``create_model_and_processor`` (AutoProcessor with right padding, ``<|Reward|>`` added as
a special token, ``Qwen2VLRewardModelBT`` with the resized vocabulary), its strict
``load_state_dict`` of the checkpoint, ``prepare_batch`` (the instruction, the chat
template, ``process_vision_info`` at 256*28*28 pixels) and ``reward``. Set up around it,
and only that:

* the package's ``config/HPSv3_7B.yaml`` is copied with ``model_name_or_path`` pointing at
  the tiny Qwen2-VL folder, ``torch_dtype: float32`` and ``bf16: false`` (the published
  run is bf16 on CUDA; the comparison wants fp32 on CPU), and no deepspeed;
* torchvision's CUDA-only wheel is made importable on CPU torch (``scoring._compat``).

The weights come from ``scoring.testing.tiny_vlm`` (torch only); their digest is stored,
so the test knows it rebuilt the same files.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from scoring import _compat  # noqa: E402,F401  (CUDA-only torchvision wheel on CPU torch)
from scoring.testing.tiny_vlm import (  # noqa: E402
    REFERENCE_PROMPTS,
    reference_cases,
    reference_images,
    tiny_digests,
    write_tiny_vlm_weights,
)


def ids_digest(ids: list[int]) -> str:
    """sha256 of the comma-joined token ids (the test computes the same of its own)."""
    return hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()


def tiny_yaml(folder: Path, target: Path) -> Path:
    """The package's HPSv3_7B.yaml with the tiny base model, fp32 and no deepspeed."""
    import hpsv3
    import yaml

    source = Path(hpsv3.__file__).parent / "config" / "HPSv3_7B.yaml"
    config = yaml.safe_load(source.read_text())
    config.update(
        model_name_or_path=str(folder),
        torch_dtype="float32",
        bf16=False,
        deepspeed=None,
        output_dir=str(target.parent / "out"),
        report_to="none",
    )
    target.write_text(yaml.safe_dump(config))
    return target


def main(out: str) -> None:
    import importlib.metadata as md

    import torch
    from hpsv3 import HPSv3RewardInferencer

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = write_tiny_vlm_weights(root)
        images = reference_images()
        paths = []
        for i, image in enumerate(images):
            path = root / f"image{i}.png"
            image.save(path)
            paths.append(str(path))
        inferencer = HPSv3RewardInferencer(
            config_path=str(tiny_yaml(files["qwen2vl"], root / "tiny.yaml")),
            checkpoint_path=str(files["hpsv3"]),
            device="cpu",
        )
        cases = reference_cases()
        batch_paths = [paths[i] for i, _ in cases]
        batch_prompts = [REFERENCE_PROMPTS[p] for _, p in cases]
        with torch.no_grad():
            batch = inferencer.prepare_batch(batch_paths, batch_prompts)
            rewards = inferencer.reward(batch_paths, batch_prompts).double()
            singles = [
                inferencer.reward([path], [prompt])[0].double().tolist()
                for path, prompt in zip(batch_paths, batch_prompts, strict=True)
            ]
        ids = batch["input_ids"]
        mask = batch["attention_mask"].bool()
        grids = batch["image_grid_thw"].tolist()
        pixels = batch["pixel_values"].double()
        starts = [0]
        for t, h, w in grids:
            starts.append(starts[-1] + t * h * w)
        texts = inferencer.processor.apply_chat_template(
            [
                [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image"},
                            {"type": "text", "text": "{prompt}"},
                        ],
                    }
                ]
            ],
            tokenize=False,
            add_generation_prompt=True,
        )
    rows = []
    for n, (image, prompt) in enumerate(cases):
        patches = pixels[starts[n] : starts[n + 1]]
        rows.append(
            {
                "image": image,
                "prompt": prompt,
                "n_tokens": int(mask[n].sum()),
                "input_ids_sha256": ids_digest(ids[n][mask[n]].tolist()),
                "image_grid_thw": grids[n],
                "pixel_sum": float(patches.sum()),
                "pixel_abs_sum": float(patches.abs().sum()),
                "pixel_first": patches[0, :8].tolist(),
                "mean": float(rewards[n, 0]),
                "log_sigma": float(rewards[n, 1]),
                "single": singles[n],
            }
        )
    versions = {
        name: md.version(name)
        for name in ("hpsv3", "torch", "torchvision", "transformers", "tokenizers", "pillow")
    }
    versions["numpy"] = md.version("numpy")
    payload = {
        "made_by": "tests/reference/hpsv3_reference.py (see its docstring)",
        "versions": versions,
        "python": sys.version.split()[0],
        "weights_digest": tiny_digests(),
        "reward_token_id": inferencer.model.special_token_ids,
        "padding_side": inferencer.processor.tokenizer.padding_side,
        "chat_template_sha256": hashlib.sha256(texts[0].encode()).hexdigest(),
        "cases": rows,
    }
    Path(out).write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}: {len(rows)} rewards")


if __name__ == "__main__":
    main(str(Path(sys.argv[1]).resolve()))
