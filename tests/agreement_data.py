"""Synthetic arena data with a known hidden truth, as the store's frames (vectorised).

Each image has a hidden quality ``q = strength[model] + N(0, image_sd²)``. A
vote shows two images of one prompt from two different models; the rater sees
``u = q_left - q_right + N(0, rater_sd²)`` and votes tie when ``|u| < tie_band``,
else for the side with the larger value. A metric is a noisy copy of the truth:
``score = q + bias[metric, model] + N(0, noise²)``. Used by tests/test_agreement.py
and benchmarks/agreement.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class SyntheticArena:
    votes: pd.DataFrame
    scores: pd.DataFrame
    images: pd.DataFrame
    prompts: pd.DataFrame
    quality: np.ndarray  # hidden quality per image (indexed by image_id - 1)
    strength: np.ndarray  # hidden strength per model


def synthetic_arena(
    rng: np.random.Generator,
    n_models: int = 6,
    n_prompts: int = 200,
    n_votes: int = 5000,
    n_raters: int = 50,
    strength_sd: float = 1.0,
    image_sd: float = 1.0,
    rater_sd: float = 0.0,
    tie_band: float = 0.0,
    metric_noise: dict[str, float] | None = None,
    metric_model_bias: dict[str, float] | None = None,
    categories: tuple[str, ...] = ("anime", "photo", "scene"),
    left_bias: float = 0.0,
) -> SyntheticArena:
    """Frames shaped like ``store.votes_frame()`` etc. (one image per model and prompt).

    ``left_bias`` is added to ``u`` (a rater preference for the left image).
    """
    metric_noise = {"truth_copy": 0.5} if metric_noise is None else metric_noise
    metric_model_bias = metric_model_bias or {}
    models = [f"model-{k:02d}" for k in range(n_models)]
    strength = rng.normal(0.0, strength_sd, n_models)
    n_images = n_models * n_prompts
    image_model = np.tile(np.arange(n_models), n_prompts)
    image_prompt = np.repeat(np.arange(n_prompts), n_models)
    quality = strength[image_model] + rng.normal(0.0, image_sd, n_images)
    image_id = np.arange(1, n_images + 1)
    prompt_id = np.arange(1, n_prompts + 1)

    p = rng.integers(0, n_prompts, n_votes)
    a = rng.integers(0, n_models, n_votes)
    b = (a + rng.integers(1, n_models, n_votes)) % n_models
    left_img = p * n_models + a  # 0-based image index
    right_img = p * n_models + b
    u = quality[left_img] - quality[right_img] + left_bias
    if rater_sd > 0:
        u = u + rng.normal(0.0, rater_sd, n_votes)
    outcome = np.where(np.abs(u) < tie_band, "tie", np.where(u > 0, "left", "right"))
    category = np.asarray(categories, dtype=object)[np.arange(n_prompts) % len(categories)]
    n_tags = 1 + (np.arange(n_prompts) * 7) % 20
    votes = pd.DataFrame(
        {
            "vote_id": np.arange(1, n_votes + 1),
            "battle_id": np.arange(1, n_votes + 1),
            "created_at": pd.Timestamp("2025-01-01")
            + pd.to_timedelta(np.arange(n_votes), unit="s"),
            "outcome": outcome,
            "rater_id": rng.integers(1, n_raters + 1, n_votes),
            "rater_kind": "simulated",
            "prompt_id": prompt_id[p],
            "prompt_set": "synthetic",
            "category": category[p],
            "left_image_id": image_id[left_img],
            "right_image_id": image_id[right_img],
            "left_model": np.asarray(models, dtype=object)[a],
            "right_model": np.asarray(models, dtype=object)[b],
            "left_sha256": [f"{i:064x}" for i in image_id[left_img]],
            "right_sha256": [f"{i:064x}" for i in image_id[right_img]],
        }
    )
    score_frames = []
    for name, noise in metric_noise.items():
        bias = rng.normal(0.0, metric_model_bias.get(name, 0.0), n_models)
        value = quality + bias[image_model] + rng.normal(0.0, noise, n_images)
        score_frames.append(
            pd.DataFrame({"image_id": image_id, "metric": name, "version": "1", "value": value})
        )
    scores = (
        pd.concat(score_frames, ignore_index=True)
        if score_frames
        else pd.DataFrame(columns=["image_id", "metric", "version", "value"])
    )
    images = pd.DataFrame(
        {
            "image_id": image_id,
            "sha256": [f"{i:064x}" for i in image_id],
            "model": np.asarray(models, dtype=object)[image_model],
            "model_kind": "demo",
            "prompt_id": prompt_id[image_prompt],
            "seed": 0,
            "width": 64,
            "height": 64,
            "broken": None,
        }
    )
    prompts = pd.DataFrame(
        {
            "prompt_id": prompt_id,
            "prompt_set": "synthetic",
            "external_id": [str(i) for i in prompt_id],
            "text": [f"prompt {i}" for i in prompt_id],
            "tags": [", ".join(f"tag{t}" for t in range(k)) for k in n_tags],
            "category": category,
        }
    )
    return SyntheticArena(votes, scores, images, prompts, quality, strength)
