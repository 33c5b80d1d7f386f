"""What changes the pixels of a generated image, and the scheduler names users know.

``GenerationSettings.settings_hash`` identifies the images made with one set of
settings: it covers size, steps, guidance, scheduler, negative prompt, base seed,
dtype, the long-prompt policy and an fp32 VAE decode (``vae_fp32``, only when on),
never what only changes speed or memory (device, batch size, attention slicing, VAE
slicing and tiling). Plain Python: nothing here imports torch or diffusers.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from typing import Any

LONG_PROMPT_POLICY = "truncate"


class GenerationError(ValueError):
    """A generation request that cannot run; the message names the input and the fix."""


# -- schedulers ----------------------------------------------------------------------------
# Friendly name -> (diffusers scheduler class, config overrides). "default" keeps the
# checkpoint's own scheduler. Names follow the A1111/ComfyUI sampler names users know.
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "default": ("", {}),
    "ddim": ("DDIMScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "lms_karras": ("LMSDiscreteScheduler", {"use_karras_sigmas": True}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "dpm2": ("KDPM2DiscreteScheduler", {}),
    "dpm2_a": ("KDPM2AncestralDiscreteScheduler", {}),
    "dpm++2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "dpm++2m_karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True},
    ),
    "dpm++2m_sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "dpm++2m_sde_karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True},
    ),
    "unipc": ("UniPCMultistepScheduler", {}),
    "lcm": ("LCMScheduler", {}),
}


def canonical_scheduler(name: str) -> str:
    """The table name of a scheduler ("DPM++ 2M Karras" -> "dpm++2m_karras"), or an error."""
    key = re.sub(r"[\s\-]+", "_", name.strip().lower())
    key = key.replace("dpm++_", "dpm++")
    if key not in SCHEDULERS:
        raise GenerationError(
            f"unknown scheduler {name!r}; known schedulers: {', '.join(SCHEDULERS)}."
        )
    return key


# -- settings and seeds --------------------------------------------------------------------
@dataclass(frozen=True)
class GenerationSettings:
    """What changes the pixels; ``settings_hash`` identifies images made with it."""

    width: int = 512
    height: int = 512
    steps: int = 28
    cfg: float = 7.0
    scheduler: str = "default"
    negative: str = ""
    base_seed: int = 0
    dtype: str = "fp32"
    long_prompts: str = LONG_PROMPT_POLICY
    vae_fp32: bool = False

    def __post_init__(self):
        object.__setattr__(self, "scheduler", canonical_scheduler(self.scheduler))
        if self.width <= 0 or self.height <= 0 or self.width % 8 or self.height % 8:
            raise GenerationError(
                f"image size {self.width}x{self.height}: width and height must be positive "
                "multiples of 8 (the VAE works on 8x8 blocks), e.g. --size 640x640."
            )
        if self.steps < 1:
            raise GenerationError(f"--steps {self.steps}: needs at least 1 denoising step.")
        if self.dtype not in ("fp32", "fp16", "bf16"):
            raise GenerationError(f"dtype {self.dtype!r}: expected fp32, fp16 or bf16.")
        if self.dtype == "fp32":  # the VAE decodes in fp32 already: the same pixels
            object.__setattr__(self, "vae_fp32", False)

    def settings_hash(self) -> str:
        """sha256 of the fields, 32 hex digits.

        ``vae_fp32`` was added after workspaces existed: it enters the hash only when on,
        so settings without it keep the hash they always had and those workspaces resume.
        """
        fields = asdict(self)
        if not fields["vae_fp32"]:
            del fields["vae_fp32"]
        blob = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:32]
