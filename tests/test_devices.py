"""Device and dtype checks before any weights load (scoring.devices.check_device): the rule
on any machine (what torch sees is passed in), and the CLI's answer on this CPU machine."""

from __future__ import annotations

import pytest

from arena import cli
from scoring.devices import check_device


def test_a_gpu_index_the_machine_lacks_is_named_with_the_ones_it_has():
    with pytest.raises(
        ValueError, match=r"cuda:7: this machine shows 1 CUDA device\(s\) \(cuda:0\)"
    ):
        check_device("cuda:7", "fp16", cuda_count=1)
    assert check_device("cuda:1", "fp16", cuda_count=2) == "cuda:1"
    assert check_device("cuda", None, cuda_count=1) == "cuda"


def test_bf16_needs_a_gpu_with_bf16_arithmetic():
    with pytest.raises(ValueError, match="bf16 on cuda:1: this GPU has no bf16 arithmetic"):
        check_device("cuda:1", "bf16", cuda_count=2, bf16_devices={0})
    assert check_device("cuda:1", "bf16", cuda_count=2, bf16_devices={1}) == "cuda:1"
    assert check_device("cuda:0", "fp16", cuda_count=1, bf16_devices=set()) == "cuda:0"


def test_no_gpu_and_malformed_devices():
    with pytest.raises(ValueError, match="no CUDA GPU is visible"):
        check_device("cuda", "fp16", cuda_count=0)
    with pytest.raises(ValueError, match="expected cuda or cuda:N"):
        check_device("cuda:x", None, cuda_count=1)
    with pytest.raises(ValueError, match="expected cpu, cuda, cuda:N or mps"):
        check_device("tpu")
    assert check_device("cpu", "fp32") == "cpu"


def test_arena_score_refuses_a_missing_gpu_before_loading_weights(settings, capsys):
    """No weights exist here: had the weights been looked for first, the error would be
    about missing weight files."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the refusal is for machines without one")
    ws = str(settings.workspace_path)
    code = cli.main(["-w", ws, "score", "--metrics", "clip", "--device", "cuda:3"])
    err = capsys.readouterr().err
    assert code == 2 and "--device cuda:3" in err and "no CUDA GPU is visible" in err
    assert "weights" not in err.lower()


def test_half_precision_checkpoints_load_in_fp32(tmp_path):
    """transformers 5 loads a checkpoint in its saved dtype: an fp16 DINOv2 or PickScore
    folder must still come back fp32 (the reference's precision, and what the pixels are)."""
    import numpy as np
    import torch
    from PIL import Image
    from transformers import Dinov2Model

    from scoring.distribution.features import DinoExtractor
    from scoring.metrics.pickscore import PickScore
    from scoring.testing.tiny_extractors import write_tiny_dinov2
    from scoring.testing.tiny_scorers import save_pickscore, tiny_pickscore_clip

    folder = write_tiny_dinov2(tmp_path / "dino")
    Dinov2Model.from_pretrained(str(folder)).half().save_pretrained(str(folder))
    extractor = DinoExtractor.load(folder)
    assert {p.dtype for p in extractor.model.parameters()} == {torch.float32}

    half = tiny_pickscore_clip(logit_scale=3.9).half()
    model_dir, proc_dir = save_pickscore(half, tmp_path / "ps")
    metric = PickScore.from_pretrained(model_dir, processor=proc_dir)
    assert {p.dtype for p in metric.model.parameters()} == {torch.float32}
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8))
    assert np.isfinite(metric.score([image], ["a cat"])).all()
