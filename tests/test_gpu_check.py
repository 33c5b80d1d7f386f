"""benchmarks/gpu_check.py: the CPU smoke run with tiny models, and the parts a CPU can check.

The GPU figures themselves need CUDA; what is checked here is that the script runs end
to end through the jobs' code, prints a row per metric, names missing weight files, and
that its TF32 comparison really runs the anomaly metric with TF32 off, then forced on.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.benchmark_script import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    return load_benchmark("gpu_check")


def table_rows(text: str) -> dict[str, list[str]]:
    """First cell -> cells of every Markdown table row."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows.setdefault(cells[0], cells)
    return rows


def test_tiny_cpu_run_prints_a_row_per_metric():
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--device", "cpu"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    block = done.stdout.split("<!-- paste into benchmarks/README.md -->", 1)[1]
    rows = table_rows(block)
    from benchmarks.gpu_check_io import FP32_ONLY, METRICS, REDUCED

    for name in METRICS:
        cells = rows[name]
        assert not cells[1].startswith("skipped"), cells
        assert float(cells[-1]) > 0 and float(cells[-2]) > 0  # images/s, score and preprocess
    for name in REDUCED:
        assert rows[name][3:6] == ["n/a on CPU", "needs CUDA", "needs CUDA"]
    for name in FP32_ONLY:
        assert rows[name][2:6] == ["fp32", "fp32 only", "fp32 only", "fp32 only"]
    assert "- n/a on CPU (TF32 is an NVIDIA GPU mode)" in block
    gen = rows["tiny-sd"]
    assert gen[1].startswith("bf16") and gen[3] == "8"
    assert gen[4:7] == ["0", "0", "0"]  # no NaN, black or uniform image
    assert "Machine: CPU" in block


def test_missing_weights_are_skipped_with_the_file_named(gpu_check, tmp_path, monkeypatch, capsys):
    import scoring.weights

    monkeypatch.setattr(scoring.weights, "_from_hf_cache", lambda spec: None)  # no HF cache
    argv = ["--device", "cpu", "--weights-dir", str(tmp_path), "--metrics", "hpsv2,contrast"]
    assert gpu_check.main([*argv, "--images", "4", "--no-generation"]) == 0
    rows = table_rows(capsys.readouterr().out.split("<!-- paste", 1)[1])
    assert rows["hpsv2"][1] == "skipped: missing xswu/HPSv2/HPS_v2.1_compressed.pt"
    assert rows["contrast"][2] == "fp32"  # the others still run


def test_tf32_comparison_runs_the_guard_then_tf32_forced_on(gpu_check, tmp_path):
    """On a CPU TF32 does nothing to the numbers, but the flags each pass runs under are
    visible: the first pass must see the metric's guard (off), the second TF32 on."""
    import torch

    from benchmarks.gpu_check_io import prompts_for, synthetic_images
    from scoring.metrics.anomaly import AnomalyScore
    from scoring.testing.tiny_extractors import write_tiny_dinov2

    metric = AnomalyScore.from_pretrained(write_tiny_dinov2(tmp_path / "dino"))
    seen = []
    forward = metric.extractor.forward_pixels

    def spy(pixels):
        seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))
        return forward(pixels)

    metric.extractor.forward_pixels = spy
    items = gpu_check.work_items(synthetic_images(2, 32), prompts_for(2), tmp_path / "im")
    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    result = gpu_check.anomaly_tf32(metric, gpu_check.batches(items, [metric], 2))
    half = len(seen) // 2
    assert seen[:half] == [(False, False)] * half
    assert seen[half:] == [(True, True)] * half
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == before
    assert set(result) == {"complexity", "vulnerability", "AS_i"}
    for off, on in result.values():
        assert off.shape == on.shape == (2,)


def test_agreement_statistics():
    from benchmarks.gpu_check_io import agreement

    x = np.array([0.1, 0.5, 0.2, 0.9])
    assert agreement(x, x) == (0.0, 1.0)
    worst, rho = agreement(x, x[::-1].copy())
    assert worst == pytest.approx(0.8) and rho == pytest.approx(-1.0)
    worst, rho = agreement(x, np.array([0.1, np.nan, 0.25, 0.9]))  # the NaN pair is left out
    assert worst == pytest.approx(0.05) and rho == pytest.approx(1.0)
    assert math.isnan(agreement(x, np.full(4, 0.3))[1])  # a constant: no ranking


def test_generation_check_counts_nan_images(gpu_check, tmp_path, capsys):
    """A pipeline whose every image is NaN (a broken half-precision checkpoint): the row
    counts them, and the job's fp32 re-decode of each (which cannot help here)."""
    from scoring.testing.tiny_diffusers import save_tiny_sd

    folder = save_tiny_sd(tmp_path / "nan-sd", nan=True)
    argv = ["--device", "cpu", "--metrics", "contrast", "--images", "2", "--pipeline"]
    argv += [str(folder), "--gen-size", "16", "--gen-steps", "2", "--gen-images", "4"]
    assert gpu_check.main(argv) == 0
    gen = table_rows(capsys.readouterr().out.split("<!-- paste", 1)[1])["nan-sd"]
    assert gen[1] == "bf16 (bf16)" and gen[3] == "4"
    assert gen[4] == "4" and gen[7] == "4"  # 4 NaN images, 4 re-decoded in fp32
