"""What the job checks on the way in and out: long or weighted prompts, broken images.

- **Broken outputs** are detected on the raw float output (before the conversion
  to 8-bit, so NaNs are visible): ``nan`` (any NaN/inf), ``black`` (every value
  <= 2/255), ``uniform`` (every channel spans <= 2/255 levels). They are stored
  with that flag, which keeps them out of matchmaking and metrics.
- **Long prompts** are truncated to the text encoder's 77 tokens (diffusers'
  own behaviour, which is what the checkpoint's authors measured); the job
  counts the truncated prompts, warns, and records ``truncated`` per image.
  Prompt-weighting syntax such as ``(word:1.2)`` is not interpreted: it reaches
  the tokenizer as literal text. The job counts such prompts and says so.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

BLACK_MAX = 2  # 8-bit levels
UNIFORM_RANGE = 2  # 8-bit levels per channel
WEIGHTING = re.compile(r"\([^()]*:\s*-?\d+(\.\d+)?\s*\)|\[[^\[\]]+\]|\({2,}")


# -- broken outputs ------------------------------------------------------------------------
def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float HxWx3 in [0, 1] -> uint8, as diffusers' numpy_to_pil does (NaN -> 0)."""
    clean = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return (np.clip(clean, 0.0, 1.0) * 255).round().astype(np.uint8)


def broken_reason(image: np.ndarray) -> str | None:
    """ "nan", "black", "uniform" or None for one raw float HxWx3 output in [0, 1]."""
    if not np.isfinite(image).all():
        return "nan"
    q = to_uint8(image)
    if int(q.max()) <= BLACK_MAX:
        return "black"
    flat = q.reshape(-1, q.shape[-1]).astype(np.int16)
    if int((flat.max(axis=0) - flat.min(axis=0)).max()) <= UNIFORM_RANGE:
        return "uniform"
    return None


# -- prompts -------------------------------------------------------------------------------
def token_count(tokenizer, text: str) -> int:
    """Tokens of ``text`` including the start/end tokens, without truncation."""
    return len(tokenizer(text, truncation=False, add_special_tokens=True)["input_ids"])


def truncated_prompts(pipe, texts: Sequence[str]) -> set[str]:
    """The texts longer than the text encoder's context (77 tokens for CLIP)."""
    tokenizer = getattr(pipe, "tokenizer", None) or getattr(pipe, "tokenizer_2", None)
    if tokenizer is None:
        return set()
    limit = int(getattr(tokenizer, "model_max_length", 77) or 77)
    if limit > 100_000:  # tokenizers without a limit report a huge sentinel
        return set()
    return {t for t in set(texts) if token_count(tokenizer, t) > limit}


def uses_weighting(text: str) -> bool:
    return bool(WEIGHTING.search(text))
