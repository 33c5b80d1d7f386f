"""The precision a metric computes in is recorded in its version and enforced by the job.

On CUDA the CLIP-based metrics run under fp16 autocast by default; their numbers move
by 1e-3 to 5e-3 (0.1 to 0.5 PickScore points). Rows of another precision therefore
carry another version ("v1+fp16") and never mix with fp32 rows, and metrics that
compute in fp32 run with autocast off whatever the caller's context.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
import torch

from scoring.metrics.base import LoadRequest, Metric, precision_name
from scoring.metrics.runner import run
from tests.test_scoring_runner import fill, score_rows


class Probe(Metric):
    """Records the autocast state it computes under; value = the image's width."""

    name: ClassVar[str] = "probe"
    version: ClassVar[str] = "p1"
    needs_prompt: ClassVar[bool] = False
    reduced_precision: ClassVar[bool] = True

    @classmethod
    def load(cls, request: LoadRequest) -> Probe:
        metric = cls()
        metric.device = request.device
        metric.seen, metric.tf32 = [], []
        return metric

    def score(self, images, prompts=None):
        state = torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")
        self.seen.append(state)
        self.tf32.append(torch.backends.cudnn.allow_tf32)
        return np.array([img.width for img in images], dtype=np.float64)


class Fp32Probe(Probe):
    name: ClassVar[str] = "probe32"
    reduced_precision: ClassVar[bool] = False


def test_precision_names_follow_the_job_default_and_fp32_metrics_stay_fp32():
    assert precision_name("cuda", None, True) == "fp16"  # the job's CUDA default
    assert precision_name("cuda:1", "bf16", True) == "bf16"
    assert precision_name("cpu", None, True) == "fp32"
    assert precision_name("cuda", "fp16", False) == "fp32"  # e.g. the tagger, the anomaly


def test_the_version_records_a_reduced_precision():
    # Loading does not touch the device, so the CUDA default can be read on a CPU machine.
    gpu = Probe.from_pretrained(device="cuda")
    assert (gpu.precision, gpu.version) == ("fp16", "p1+fp16")
    assert Probe.from_pretrained(device="cuda", dtype="bf16").version == "p1+bf16"
    cpu = Probe.from_pretrained(device="cpu")
    assert (cpu.precision, cpu.version) == ("fp32", "p1")
    assert Probe.version == "p1"  # the class (what `arena metrics` lists) is unchanged
    assert Fp32Probe.from_pretrained(device="cuda").version == "p1"


def test_reduced_precision_rows_are_stored_apart_and_do_not_count_as_fp32_work(store):
    ids = fill(store, n=6)
    half = Probe.from_pretrained(device="cpu")
    half.precision, half.version = "bf16", "p1+bf16"  # what a GPU load gives (CPU autocast)
    assert run(store, [half], batch_size=4, progress=False).rows_written == {"probe": 6}
    assert set(half.seen) == {(True, torch.bfloat16)}  # it computed under its autocast
    full = Probe.from_pretrained(device="cpu")
    summary = run(store, [full], batch_size=4, progress=False)
    assert summary.rows_written == {"probe": 6}  # the bf16 rows are not fp32 work done
    assert {r[2] for r in score_rows(store)} == {"p1", "p1+bf16"}
    assert sorted(r[0] for r in score_rows(store) if r[2] == "p1") == sorted(ids)


def test_fp32_metrics_run_with_autocast_off_inside_a_reduced_precision_job(store):
    fill(store, n=4)
    full = Fp32Probe.from_pretrained(device="cpu")
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a caller's job-wide autocast
        run(store, [full], batch_size=4, progress=False)
    assert full.seen and all(enabled is False for enabled, _ in full.seen)
    assert full.tf32 == [False]  # nor TF32: its GPU rows share the CPU rows' version
    assert torch.backends.cudnn.allow_tf32  # PyTorch's default, restored after the job


# -- features: device in the cache key, TF32 off -----------------------------------------
class FlagProbe(torch.nn.Module):
    """Returns a constant feature; records cuDNN's TF32 flag at forward time."""

    def __init__(self):
        super().__init__()
        self.flags = []

    def forward(self, pixel_values):
        self.flags.append(torch.backends.cudnn.allow_tf32)
        return type("Out", (), {"pooler_output": pixel_values.flatten(1)[:, :4]})()


def test_feature_keys_name_the_device_type_and_extraction_runs_without_tf32(tmp_path):
    from scoring.distribution.features import DinoExtractor
    from scoring.metrics.anomaly import AnomalyScore

    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"weights")
    cpu = DinoExtractor(FlagProbe(), weights, "cpu", 4)
    gpu = DinoExtractor(FlagProbe(), weights, "cuda:1", 4)
    assert "@cuda" not in cpu.key  # CPU keys as before: existing caches stay valid
    assert gpu.key == f"{cpu.key}@cuda"  # every GPU index shares one key (ranks)
    assert AnomalyScore(gpu).version == f"{AnomalyScore.version}@cuda"
    assert AnomalyScore(cpu).version == AnomalyScore.version
    assert torch.backends.cudnn.allow_tf32  # PyTorch's default, which GPUs apply to convs
    out = cpu.extract(torch.rand(2, 3, 8, 8))
    assert out.shape == (2, 4) and cpu.model.flags == [False]
    assert torch.backends.cudnn.allow_tf32  # restored


def test_a_metric_scores_through_its_batched_path_and_must_implement_one():
    """Metric.score defaults to prepare + score_inputs; a metric with neither is refused
    (the two defaults would otherwise call each other forever)."""
    from PIL import Image

    class Batched(Probe):
        name: ClassVar[str] = "batched"
        score = Metric.score
        needs_prompt: ClassVar[bool] = True

        def score_inputs(self, inputs, prompts=None):
            return np.array([len(p) + img.width for img, p in zip(inputs, prompts, strict=True)])

    class Neither(Probe):
        name: ClassVar[str] = "neither"
        score = Metric.score

    images = [Image.new("RGB", (w, 4)) for w in (3, 5)]
    assert Batched().score(images, ["a", "bcd"]).tolist() == [4, 8]
    assert Batched().score([], []).shape == (0,)
    with pytest.raises(ValueError, match="needs one prompt per image"):
        Batched().score(images, ["a"])
    with pytest.raises(NotImplementedError, match="neither score nor score_inputs"):
        Neither().score(images)
    with pytest.raises(NotImplementedError, match="neither score nor score_inputs"):
        Neither().score_inputs(images)
