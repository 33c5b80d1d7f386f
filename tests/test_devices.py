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
