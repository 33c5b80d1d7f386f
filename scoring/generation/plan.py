"""Which images to make: (prompt, seed index) jobs, their seeds and their batches.

Image (prompt, seed index) is made from its own ``torch.Generator`` (on the CPU, so
the starting noise does not depend on the device) seeded with
``derive_seed(base_seed, "<prompt set>/<prompt id>", seed index)``: a stable hash, so
the image is the same whatever the batch size, the order of the run, or which other
prompts share its batch. Every model gets the same seed for the same (prompt, seed
index), so models start from the same noise.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from scoring.generation.settings import GenerationError


def derive_seed(base_seed: int, prompt_key: str, seed_index: int, salt: int = 0) -> int:
    """A stable 31-bit seed for (base seed, prompt, seed index); fits every SQL INTEGER."""
    text = f"{base_seed}\x1f{prompt_key}\x1f{seed_index}\x1f{salt}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFF_FFFF


@dataclass(frozen=True)
class Job:
    prompt_id: int
    prompt_key: str
    text: str
    seed_index: int
    seed: int


def plan_jobs(prompts: Sequence[tuple[int, str, str]], seeds: int, base_seed: int) -> list[Job]:
    """Jobs for (prompt_id, prompt_key, text) x seed indices, prompt-major.

    Two seed indices of one prompt never share a seed (a hash collision is
    re-drawn with a salt), so (prompt, seed) identifies an image.
    """
    jobs = []
    for prompt_id, key, text in prompts:
        used: set[int] = set()
        for index in range(seeds):
            salt, seed = 0, derive_seed(base_seed, key, index)
            while seed in used:
                salt += 1
                seed = derive_seed(base_seed, key, index, salt)
            used.add(seed)
            jobs.append(Job(prompt_id, key, text, index, seed))
    return jobs


def make_batches(jobs: Sequence[Job], batch_size: int) -> list[list[Job]]:
    if batch_size < 1:
        raise GenerationError(f"--batch-size {batch_size}: must be at least 1.")
    return [list(jobs[i : i + batch_size]) for i in range(0, len(jobs), batch_size)]


def call_layout(batch: Sequence[Job]) -> tuple[list[str], int]:
    """(prompt list, num_images_per_prompt) for one pipeline call.

    When every prompt in the batch needs the same number of images (the usual
    case), each prompt is encoded once and ``num_images_per_prompt`` repeats it;
    otherwise (a resumed run with a partial prompt) every job is its own entry.
    Either way the order of images is the order of ``batch``.
    """
    counts: dict[int, int] = {}
    texts: dict[int, str] = {}
    for job in batch:
        counts[job.prompt_id] = counts.get(job.prompt_id, 0) + 1
        texts[job.prompt_id] = job.text
    per = set(counts.values())
    contiguous = [j.prompt_id for j in batch] == [pid for pid in counts for _ in range(counts[pid])]
    if len(per) == 1 and contiguous:
        return [texts[pid] for pid in counts], per.pop()
    return [job.text for job in batch], 1
