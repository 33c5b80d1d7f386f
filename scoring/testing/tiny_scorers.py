"""Tiny random stand-ins for every image metric's weights, in one weights-folder layout.

``write_weights_folder(root)`` fills ``root`` as ``$ARENA_WEIGHTS_DIR`` is laid out
(``<root>/<repo_id>/<file>``), so a ``WeightSources(root)`` finds every file through
the same resolution as real weights: the ViT-L/14 CLIP and aesthetic MLP
(``tiny_clip``), a narrow open_clip ViT-H-14 saved as an HPSv2.1 checkpoint, a
transformers CLIPModel with the LAION processor folder (PickScore), an ONNX tagger with
its ``selected_tags.csv`` and a DINOv2 (anomaly). For ``benchmarks/gpu_check.py --tiny``:
the script's own code paths run on a CPU in seconds. The HPSv2 architecture is fixed
by the metric (``open_clip.create_model('ViT-H-14')``), so its narrow config must be
passed as ``model_overrides`` (``HPS_OVERRIDES``) when it is loaded.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

from scoring import _compat  # noqa: F401  (before open_clip imports torchvision)

HPS_REPO, HPS_FILE = "xswu/HPSv2", "HPS_v2.1_compressed.pt"
PICKSCORE_REPO = "yuvalkirstain/PickScore_v1"
PICKSCORE_PROCESSOR_REPO = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"

# ViT-H-14's family (ViT, patch 14, 224 px, 77-token text, 49408 BPE vocab), narrow and shallow.
HPS_OVERRIDES = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 32, "head_width": 16, "patch_size": 14},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]
# The file the LAION repo ships (legacy feature-extractor format).
LAION_PREPROCESSOR_CONFIG = {
    "crop_size": 224,
    "do_center_crop": True,
    "do_normalize": True,
    "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor",
    "image_mean": OPENAI_MEAN,
    "image_std": OPENAI_STD,
    "resample": 3,
    "size": 224,
}
# (name, category): general 0, character 4, rating 9 -- the real file's three kinds.
TAGGER_TAGS = [
    ("general", 9),
    ("sensitive", 9),
    ("1girl", 0),
    ("solo", 0),
    ("long_hair", 0),
    ("short_hair", 0),
    ("smile", 0),
    ("blue_eyes", 0),
    ("red_hair", 0),
    ("outdoors", 0),
    ("hatsune_miku", 4),
]
TAGGER_SIZE = 32


def write_tiny_hpsv2(folder: Path, seed: int = 0) -> Path:
    """A random narrow ViT-H-14 saved as HPSv2 saves it (``{"state_dict": ...}``)."""
    import open_clip
    import torch

    torch.manual_seed(seed)
    model = open_clip.create_model("ViT-H-14", pretrained=None, **HPS_OVERRIDES).eval()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / HPS_FILE
    torch.save({"state_dict": model.state_dict(), "epoch": 1}, path)
    return path


def write_clip_tokenizer(folder: Path):
    """CLIP's BPE (open_clip's bundled vocabulary) saved as a transformers tokenizer."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    from transformers import CLIPTokenizer

    with gzip.open(default_bpe()) as f:
        merges = f.read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    base = list(bytes_to_unicode().values())
    tokens = [*base, *(b + "</w>" for b in base), *("".join(m.split()) for m in merges)]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tokenizer = CLIPTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), pad_token="!", model_max_length=77
    )
    tokenizer.save_pretrained(folder)
    return tokenizer


def write_tiny_pickscore(root: Path, seed: int = 0) -> tuple[Path, Path]:
    """A random tiny CLIPModel under ``root/<PickScore repo>`` and the LAION processor
    folder under ``root/<processor repo>``; returns both folders."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    shared = {"hidden_act": "gelu", "num_hidden_layers": 2, "num_attention_heads": 2}
    config = CLIPConfig(
        text_config={
            **shared,
            "vocab_size": 49408,
            "hidden_size": 32,
            "intermediate_size": 64,
            "max_position_embeddings": 77,
            "bos_token_id": 49406,
            "eos_token_id": 49407,
            "pad_token_id": 1,
        },
        vision_config={
            **shared,
            "hidden_size": 32,
            "intermediate_size": 64,
            "image_size": 224,
            "patch_size": 14,
        },
        projection_dim=16,
    )
    model = CLIPModel(config).eval()
    model_dir, proc_dir = root / PICKSCORE_REPO, root / PICKSCORE_PROCESSOR_REPO
    model.save_pretrained(model_dir)
    write_clip_tokenizer(proc_dir)
    (proc_dir / "preprocessor_config.json").write_text(json.dumps(LAION_PREPROCESSOR_CONFIG))
    return model_dir, proc_dir


def write_tiny_tagger(folder: Path, seed: int = 0) -> Path:
    """``model.onnx`` (NHWC input -> Flatten -> MatMul -> Add -> Sigmoid, the real graph's
    input and output names) and ``selected_tags.csv``; returns the folder."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    n_in, n_tags = TAGGER_SIZE * TAGGER_SIZE * 3, len(TAGGER_TAGS)
    weight = rng.normal(size=(n_in, n_tags)) / (255.0 * np.sqrt(n_in)) * 4
    bias = np.where(np.arange(n_tags) % 2 == 0, 1.0, -1.5)  # a mix of hits and misses
    value = helper.make_tensor_value_info
    pixels = value("input_1:0", TensorProto.FLOAT, ["batch", TAGGER_SIZE, TAGGER_SIZE, 3])
    probabilities = value("predictions_sigmoid", TensorProto.FLOAT, ["batch", n_tags])
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["input_1:0"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "W"], ["logits0"]),
            helper.make_node("Add", ["logits0", "B"], ["logits"]),
            helper.make_node("Sigmoid", ["logits"], ["predictions_sigmoid"]),
        ],
        "tiny_tagger",
        [pixels],
        [probabilities],
        initializer=[
            numpy_helper.from_array(weight.astype(np.float32), "W"),
            numpy_helper.from_array(bias.astype(np.float32), "B"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / "model.onnx"))
    lines = ["tag_id,name,category,count"]
    lines += [f"{1000 + i},{name},{cat},{500 - i}" for i, (name, cat) in enumerate(TAGGER_TAGS)]
    (folder / "selected_tags.csv").write_text("\n".join(lines) + "\n")
    return folder


def write_weights_folder(root: Path, seed: int = 0) -> Path:
    """Every image metric's tiny weights under ``root`` in the weights-folder layout."""
    from scoring.distribution.features import DINOV2_LARGE
    from scoring.metrics.aesthetic import AESTHETIC_MLP
    from scoring.metrics.openai_clip import VITL14_OPENAI
    from scoring.metrics.tags import TAGGER_REPO
    from scoring.testing.tiny_clip import write_tiny_aesthetic, write_tiny_clip
    from scoring.testing.tiny_extractors import write_tiny_dinov2

    write_tiny_clip(root / VITL14_OPENAI.repo_id, seed)
    write_tiny_aesthetic(root / AESTHETIC_MLP.repo_id, seed)
    write_tiny_hpsv2(root / HPS_REPO, seed)
    write_tiny_pickscore(root, seed)
    write_tiny_tagger(root / TAGGER_REPO, seed)
    write_tiny_dinov2(root / DINOV2_LARGE.repo_id, seed)
    return root
