"""Scores of the reference ``image-reward`` package on the tiny ImageReward weights.

Writes ``tests/reference/imagereward.json``, which ``tests/test_metric_imagereward.py``
compares our metric with (within 1e-5). Never imported by the tests: the package pins
timm 0.6.13 and fairscale 0.4.13 and its med.py needs a transformers 4.x, none of which
fit the project's environment, so it runs in a separate venv:

    python3.11 -m venv /tmp/ir-venv
    /tmp/ir-venv/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
    /tmp/ir-venv/bin/pip install --no-deps torchvision==0.28.0
    /tmp/ir-venv/bin/pip install timm==0.6.13 transformers==4.30.2 "numpy<2" pillow==12.3.0
    /tmp/ir-venv/bin/pip install --no-build-isolation fairscale==0.4.13
    /tmp/ir-venv/bin/pip install --no-deps image-reward==1.5
    cd tests/reference && /tmp/ir-venv/bin/python imagereward_reference.py imagereward.json

(The fixture was made exactly so: torch 2.13.0+cpu, torchvision 0.28.0, timm 0.6.13,
fairscale 0.4.13, transformers 4.30.2, tokenizers 0.13.3, numpy 1.26.4, pillow 12.3.0,
image-reward 1.5, Python 3.11.)

What runs is the package's own code, unmodified: ``ImageReward.ImageReward.ImageReward``
(its preprocessing, its ``score`` and ``inference_rank``), ``models/BLIP`` (med.py's
BertModel, vit.py's VisionTransformer, blip.py's ``init_tokenizer``). Three things are
set up around it, and only those:

* the package's ``__init__`` files import unrelated scorers (OpenAI ``clip``, ReFL with
  diffusers/accelerate/datasets), so ``ImageReward`` and ``ImageReward.models`` are
  registered as bare packages over the installed folders and the modules above are
  imported directly;
* ``BLIP_Pretrain`` builds a ViT-L and ``ImageReward`` an ``MLP(768)``: the package's
  own ``create_vit``/``MLP`` are wrapped to build its own classes at the tiny sizes
  (``VisionTransformer(embed_dim=128, depth=2, num_heads=2)``, ``MLP(32)``);
* ``init_tokenizer`` loads ``BertTokenizer.from_pretrained('bert-base-uncased')``: the
  working directory holds a ``bert-base-uncased/`` folder with the tiny ``vocab.txt``,
  which transformers takes before the hub.

The state dict is loaded with ``strict=True`` (the package itself uses strict=False):
the tiny file has exactly the reference module's keys and shapes. The weights come from
``scoring.testing.tiny_imagereward`` (torch only); their digest is stored, so the test
knows it rebuilt the same file.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from scoring import _compat  # noqa: E402,F401  (CUDA-only torchvision wheel on CPU torch)
from scoring.testing.tiny_imagereward import (  # noqa: E402
    EMBED_DIM,
    PATCH,
    REFERENCE_PROMPTS,
    TEXT_WIDTH,
    VISION_DEPTH,
    VISION_WIDTH,
    reference_cases,
    reference_images,
    state_digest,
    write_tiny_imagereward,
)

# Positions of the preprocessed (3, 224, 224) tensor stored per image.
PIXEL_SAMPLES = [(k % 3, (k * 37) % 224, (k * 91 + 13) % 224) for k in range(64)]


def import_reference():
    """The package's ImageReward and BLIP modules, without its top-level __init__ files."""
    spec = importlib.util.find_spec("ImageReward")
    root = Path(next(iter(spec.submodule_search_locations)))
    for name, path in (("ImageReward", root), ("ImageReward.models", root / "models")):
        package = types.ModuleType(name)
        package.__path__ = [str(path)]
        sys.modules[name] = package
    import ImageReward.ImageReward as reward_module
    import ImageReward.models.BLIP.blip_pretrain as pretrain_module
    from ImageReward.models.BLIP.vit import VisionTransformer

    def tiny_vit(vit, image_size, use_grad_checkpointing=False, ckpt_layer=0, drop_path_rate=0):
        assert vit == "large" and image_size == 224
        encoder = VisionTransformer(
            img_size=image_size,
            patch_size=PATCH,
            embed_dim=VISION_WIDTH,
            depth=VISION_DEPTH,
            num_heads=VISION_WIDTH // 64,
            drop_path_rate=0.1,
        )
        return encoder, VISION_WIDTH

    package_mlp = reward_module.MLP

    def tiny_mlp(input_size):
        assert input_size == 768
        return package_mlp(TEXT_WIDTH)

    pretrain_module.create_vit = tiny_vit
    reward_module.MLP = tiny_mlp
    return reward_module


def main(target: str) -> None:
    import importlib.metadata as md

    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = write_tiny_imagereward(root)
        os.chdir(root)  # bert-base-uncased/vocab.txt is found here by from_pretrained
        reward_module = import_reference()
        model = reward_module.ImageReward(med_config=str(files["med_config"]), device="cpu")
        state = torch.load(files["weights"], map_location="cpu")
        result = model.load_state_dict(state, strict=True)
        model.eval()
        assert model.blip.vision_proj.out_features == EMBED_DIM
        digest = state_digest(
            state,
            json.dumps(json.loads(files["med_config"].read_text()), sort_keys=True),
            files["vocab"].read_text(encoding="utf-8").rstrip("\n"),
        )

        images = reference_images()
        tokenizer = model.blip.tokenizer
        tokens = {
            prompt: tokenizer(
                prompt, padding="max_length", truncation=True, max_length=35
            ).input_ids
            for prompt in REFERENCE_PROMPTS
        }
        pixels = []
        for image in images:
            x = model.preprocess(image).double()
            pixels.append(
                {
                    "mean": x.mean(dim=(1, 2)).tolist(),
                    "abs_mean": x.abs().mean(dim=(1, 2)).tolist(),
                    "samples": [float(x[c, i, j]) for c, i, j in PIXEL_SAMPLES],
                }
            )
        with torch.no_grad():
            scores = [
                {"image": i, "prompt": p, "score": model.score(REFERENCE_PROMPTS[p], images[i])}
                for i, p in reference_cases()
            ]
            ranks, rank_scores = model.inference_rank(REFERENCE_PROMPTS[1], images)
    versions = {
        name: md.version(name)
        for name in ("image-reward", "torch", "torchvision", "timm", "fairscale", "transformers")
    }
    versions.update({name: md.version(name) for name in ("tokenizers", "numpy", "pillow")})
    payload = {
        "made_by": "tests/reference/imagereward_reference.py (see its docstring)",
        "versions": versions,
        "python": sys.version.split()[0],
        "weights_digest": digest,
        "strict_load": {"missing": result.missing_keys, "unexpected": result.unexpected_keys},
        "constants": {"mean": model.mean, "std": model.std},
        "tokens": tokens,
        "pixel_samples": PIXEL_SAMPLES,
        "pixels": pixels,
        "scores": scores,
        "rank_prompt": 1,
        "rank_scores": rank_scores,
        "ranks": ranks,
    }
    Path(target).write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {target}: {len(scores)} scores, digest {digest[:12]}")


if __name__ == "__main__":
    main(str(Path(sys.argv[1]).resolve()))
