"""The four procedural demo models: the faithful renderer, and three with a defect each.

=================  ===========================================================
model              what it does (and its hidden strength, DEMO_TRUE_STRENGTH)
=================  ===========================================================
faithful           draws every tag with its colour                       (1.0)
blurry             faithful, then a gaussian blur of radius 3            (0.4)
wrong-colours      faithful, then every hue rotated by 90-270 degrees    (-0.2)
missing-objects    drops about half of the tagged objects (at least one) (-0.6)
=================  ===========================================================

The same (prompt, seed) gives all four models the same layout (``scene_rng``), so
they differ only by their defect. The hidden strengths are what the simulated raters
(``arena.demo.raters``) vote by.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from arena.demo.scenes import Scene, parse_tags, render_scene

# Hidden ground truth of the simulated raters (Bradley-Terry log-strengths).
DEMO_TRUE_STRENGTH = {
    "faithful": 1.0,
    "blurry": 0.4,
    "wrong-colours": -0.2,
    "missing-objects": -0.6,
}
DEMO_MODELS = {
    "faithful": "Draws every tag of the prompt with its colour (the best demo model).",
    "blurry": "The faithful scene, then a gaussian blur of radius 3.",
    "wrong-colours": "The faithful scene, then every hue rotated by 90-270 degrees.",
    "missing-objects": "Drops about half of the tagged objects (always at least one).",
}


def drop_objects(scene: Scene, rng: np.random.Generator) -> Scene:
    """A copy of ``scene`` without about half of its tagged things (at least one)."""
    things = scene.droppable()
    if not things:
        return scene
    drop = rng.random(len(things)) < 0.5
    drop[rng.integers(len(things))] = True
    out = Scene(scene.setting, scene.figure, dict(scene.parts), scene.held, dict(scene.objects))
    for (kind, name), gone in zip(things, drop, strict=True):
        if not gone:
            continue
        if kind == "part":
            out.parts.pop(name)
        elif kind == "held":
            out.held = None
        else:
            out.objects.pop(name)
    return out


def rotate_hues(img: Image.Image, degrees: float) -> Image.Image:
    h, s, v = img.convert("HSV").split()
    shift = round(degrees / 360 * 256) % 256
    h = h.point(lambda x: (x + shift) % 256)
    return Image.merge("HSV", (h, s, v)).convert("RGB")


def render(
    model: str, tags: str, scene_rng: np.random.Generator, model_rng: np.random.Generator
) -> Image.Image:
    """``model``'s image for a prompt; ``scene_rng`` (same for all models) sets the layout."""
    scene = parse_tags(tags)
    if model == "missing-objects":
        scene = drop_objects(scene, model_rng)
    img = render_scene(scene, scene_rng)
    if model == "blurry":
        img = img.filter(ImageFilter.GaussianBlur(3))
    elif model == "wrong-colours":
        img = rotate_hues(img, model_rng.uniform(90, 270))
    elif model not in ("faithful", "missing-objects"):
        raise ValueError(f"unknown demo model {model!r}; known: {', '.join(DEMO_MODELS)}")
    return img


def image_rngs(seed: int, prompt_index: int, image_seed: int, model_index: int):
    """(scene rng, model rng) of one image; the scene's is the same for every model."""
    scene = np.random.default_rng([seed, prompt_index, image_seed])
    model = np.random.default_rng([seed, prompt_index, image_seed, 1000 + model_index])
    return scene, model
