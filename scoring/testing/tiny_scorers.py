"""Tiny random stand-ins for every image metric's weights, in one weights-folder layout.

``write_weights_folder(root)`` fills ``root`` as ``$ARENA_WEIGHTS_DIR`` is laid out
(``<root>/<repo_id>/<file>``), so a ``WeightSources(root)`` finds every file through
the same resolution as real weights: the ViT-L/14 CLIP and aesthetic MLP
(``tiny_clip``), a narrow open_clip ViT-H-14 saved as an HPSv2.1 checkpoint, a
transformers CLIPModel with the LAION processor folder (PickScore), an ONNX tagger with
its ``selected_tags.csv``, a DINOv2 (anomaly) and ImageReward's three files
(``tiny_imagereward``). For ``benchmarks/gpu_check.py --tiny``:
the script's own code paths run on a CPU in seconds. The metric tests build from the
same parts (``tiny_hpsv2``/``save_hpsv2``, ``tiny_pickscore_clip``/``save_pickscore``,
``write_tagger_onnx``/``write_tag_csv``), keeping the in-memory model as the reference
or writing the variants a test needs, so test and benchmark weights come from one
implementation. The HPSv2 architecture is fixed by the metric
(``open_clip.create_model('ViT-H-14')``), so its narrow config must be passed as
``model_overrides`` (``HPS_OVERRIDES``) when it is loaded.
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


def tiny_hpsv2(seed: int = 0):
    """A random narrow open_clip ViT-H-14 (``HPS_OVERRIDES``); tests compare against it."""
    import open_clip
    import torch

    from scoring.metrics.hpsv2 import ARCH

    torch.manual_seed(seed)
    return open_clip.create_model(ARCH, pretrained=None, **HPS_OVERRIDES).eval()


def save_hpsv2(model, folder: Path) -> Path:
    """``model`` saved as HPSv2 saves it (``{"state_dict": ...}``) in ``folder/HPS_FILE``."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / HPS_FILE
    torch.save({"state_dict": model.state_dict(), "epoch": 1}, path)
    return path


def write_tiny_hpsv2(folder: Path, seed: int = 0) -> Path:
    """A random narrow ViT-H-14 saved as an HPSv2 checkpoint; returns the file."""
    return save_hpsv2(tiny_hpsv2(seed), folder)


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


def tiny_pickscore_clip(seed: int = 0, logit_scale: float | None = None):
    """A random tiny transformers CLIPModel (PickScore's class); ``logit_scale`` replaces
    the default temperature (ln(1/0.07)), so a test can see that the metric uses it."""
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
    if logit_scale is not None:
        with torch.no_grad():
            model.logit_scale.fill_(logit_scale)
    return model


def save_pickscore(model, root: Path) -> tuple[Path, Path]:
    """``model`` under ``root/<PickScore repo>`` and the LAION processor folder under
    ``root/<processor repo>``; returns both folders."""
    model_dir, proc_dir = root / PICKSCORE_REPO, root / PICKSCORE_PROCESSOR_REPO
    model.save_pretrained(model_dir)
    write_clip_tokenizer(proc_dir)
    (proc_dir / "preprocessor_config.json").write_text(json.dumps(LAION_PREPROCESSOR_CONFIG))
    return model_dir, proc_dir


def write_tiny_pickscore(root: Path, seed: int = 0) -> tuple[Path, Path]:
    """A random tiny PickScore model and its processor under ``root``; returns both folders."""
    return save_pickscore(tiny_pickscore_clip(seed), root)


def save_linear_sigmoid_onnx(
    path: Path,
    graph_name: str,
    image: tuple[str, list],
    output: tuple[str, list],
    weight: np.ndarray,
    bias: np.ndarray,
    opset: int,
) -> Path:
    """An ONNX file computing sigmoid(flatten(image) @ weight + bias), with the real model's
    input and output names and shapes: a stand-in for an ONNX image scorer whose numbers
    are easy to check (the anime aesthetic predictor, the WD tagger)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    value = helper.make_tensor_value_info
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", [image[0]], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "W"], ["logits0"]),
            helper.make_node("Add", ["logits0", "B"], ["logits"]),
            helper.make_node("Sigmoid", ["logits"], [output[0]]),
        ],
        graph_name,
        [value(image[0], TensorProto.FLOAT, image[1])],
        [value(output[0], TensorProto.FLOAT, output[1])],
        initializer=[
            numpy_helper.from_array(weight.astype(np.float32), "W"),
            numpy_helper.from_array(bias.astype(np.float32), "B"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def write_tagger_onnx(
    path: Path, size: int, n_tags: int, seed: int = 0, fixed_batch: bool = False
) -> Path:
    """NHWC input -> Flatten -> MatMul -> Add -> Sigmoid, with the real graph's input and
    output names; ``fixed_batch`` gives the input a batch of 1, as some exports have."""
    rng = np.random.default_rng(seed)
    n_in = size * size * 3
    weight = rng.normal(size=(n_in, n_tags)) / (255.0 * np.sqrt(n_in)) * 4
    bias = np.where(np.arange(n_tags) % 2 == 0, 1.0, -1.5)  # a mix of hits and misses
    batch = 1 if fixed_batch else "batch"
    return save_linear_sigmoid_onnx(
        path,
        "tiny_tagger",
        ("input_1:0", [batch, size, size, 3]),
        ("predictions_sigmoid", [batch, n_tags]),
        weight,
        bias,
        opset=13,
    )


def write_tag_csv(path: Path, tags=TAGGER_TAGS) -> Path:
    """``selected_tags.csv`` in the real file's columns, one row per ``(name, category)``."""
    lines = ["tag_id,name,category,count"]
    lines += [f"{1000 + i},{name},{cat},{500 - i}" for i, (name, cat) in enumerate(tags)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_tiny_tagger(
    folder: Path,
    seed: int = 0,
    tags=TAGGER_TAGS,
    size: int = TAGGER_SIZE,
    fixed_batch: bool = False,
) -> Path:
    """``model.onnx`` with one output per tag and the matching ``selected_tags.csv``;
    returns the folder."""
    write_tagger_onnx(folder / "model.onnx", size, len(tags), seed, fixed_batch)
    write_tag_csv(folder / "selected_tags.csv", tags)
    return folder


def write_weights_folder(root: Path, seed: int = 0) -> Path:
    """Every image metric's tiny weights under ``root`` in the weights-folder layout."""
    from scoring.distribution.features import DINOV2_LARGE
    from scoring.metrics.aesthetic import AESTHETIC_MLP
    from scoring.metrics.openai_clip import VITL14_OPENAI
    from scoring.metrics.tags import TAGGER_REPO
    from scoring.testing.tiny_clip import write_tiny_aesthetic, write_tiny_clip
    from scoring.testing.tiny_extractors import write_tiny_dinov2
    from scoring.testing.tiny_imagereward import write_tiny_imagereward

    write_tiny_clip(root / VITL14_OPENAI.repo_id, seed)
    write_tiny_aesthetic(root / AESTHETIC_MLP.repo_id, seed)
    write_tiny_hpsv2(root / HPS_REPO, seed)
    write_tiny_pickscore(root, seed)
    write_tiny_tagger(root / TAGGER_REPO, seed)
    write_tiny_dinov2(root / DINOV2_LARGE.repo_id, seed)
    write_tiny_imagereward(root, seed)
    return root
