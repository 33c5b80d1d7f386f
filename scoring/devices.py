"""Device checks before any weights load, and the precision guards of fp32 computations.

Without it ``--device cuda:7`` on a one-GPU machine, or bf16 on a GPU without bf16
arithmetic, fails with a raw RuntimeError minutes into a job, after the weights have
loaded. :func:`check_device` reads what torch sees (or takes it as arguments, so the
rule itself is tested on any machine) and says what to pass instead.
"""

from __future__ import annotations

from contextlib import contextmanager


def check_device(
    device: str,
    dtype: str | None = None,
    *,
    cuda_count: int | None = None,
    bf16_devices: set[int] | None = None,
) -> str:
    """``device`` if it exists and can compute in ``dtype`` ("fp32", "fp16", "bf16" or
    None); otherwise a ValueError naming the flag, what this machine has and what to do.

    ``cuda_count`` and ``bf16_devices`` (the CUDA indices with bf16 arithmetic: compute
    capability 8.0 or newer) default to what torch reports.
    """
    import torch

    if not (device == "cpu" or device == "mps" or device.startswith("cuda")):
        raise ValueError(f"--device {device!r}: expected cpu, cuda, cuda:N or mps.")
    if not device.startswith("cuda"):
        return device
    index_text = device.partition(":")[2]
    if index_text and not index_text.isdigit():
        raise ValueError(f"--device {device!r}: expected cuda or cuda:N with N a number.")
    index = int(index_text or 0)
    if cuda_count is None:
        cuda_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if cuda_count == 0:
        raise ValueError(
            f"--device {device}: no CUDA GPU is visible to torch {torch.__version__} (a CPU "
            "build, no driver, or CUDA_VISIBLE_DEVICES empty); use --device cpu."
        )
    if index >= cuda_count:
        have = ", ".join(f"cuda:{i}" for i in range(cuda_count))
        raise ValueError(
            f"--device {device}: this machine shows {cuda_count} CUDA device(s) ({have}); "
            "pick one of them (CUDA_VISIBLE_DEVICES renumbers them from 0)."
        )
    if dtype == "bf16":
        if bf16_devices is None:
            bf16_devices = {
                i for i in range(cuda_count) if torch.cuda.get_device_capability(i)[0] >= 8
            }
        if index not in bf16_devices:
            raise ValueError(
                f"--dtype bf16 on {device}: this GPU has no bf16 arithmetic (it needs compute "
                "capability 8.0, Ampere, or newer); use --dtype fp16 or fp32."
            )
    return device


def fp32_weights() -> dict:
    """``from_pretrained`` keyword that loads a transformers model's weights in fp32.

    transformers 5 loads a checkpoint in the dtype it was saved in: an fp16 DINOv2 or
    PickScore folder would come back fp16 and then meet fp32 pixels (a dtype mismatch
    on CPU, half-precision features on GPU where the reference computes in fp32). The
    keyword is ``dtype`` since transformers 4.56, ``torch_dtype`` before.
    """
    from importlib.metadata import version

    import torch
    from packaging.version import Version

    # the installed version from its metadata: importing transformers here would load
    # torchvision before the shim of scoring._compat
    new = Version(version("transformers")) >= Version("4.56")
    return {"dtype" if new else "torch_dtype": torch.float32}


@contextmanager
def tf32(allowed: bool):
    """cuDNN convolutions and CUDA matmuls with TF32 allowed or not; restored after."""
    import torch

    matmul = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = allowed
    try:
        with torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, allow_tf32=allowed):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul


def full_fp32():
    """No TF32 inside: cuDNN convolutions and CUDA matmuls in true fp32.

    PyTorch lets cuDNN run fp32 convolutions in TF32 (10 mantissa bits) on Ampere and
    newer GPUs by default, which moves features by ~1e-3 relative: the Anomaly Score's
    complexity walk drowns in it, and cached features would differ from the CPU's more
    than fp32 rounding. The flags are process-wide; the jobs compute on one thread.
    """
    return tf32(False)
