"""A small real workspace for the voting-arena tests (independent of arena.demo.build).

Models get distinctive names and source paths so that the blinding test can search
everything the browser received for them. One ``reference`` model and one broken
image per model exist so that tests can check they are never served.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, PngImagePlugin

from arena.storage.store import PromptRow, Store

MODEL_NAMES = ("zephyrquokka-v3", "marmalade-basilisk-xl", "tundrafinch-turbo")
REFERENCE_NAME = "obsidian-reference-set"


@dataclass
class Fixture:
    model_ids: dict[str, int]
    reference_id: int
    prompt_ids: list[int]
    images: dict[int, tuple[str, int]] = field(default_factory=dict)  # image id -> (model, prompt)
    broken: set[int] = field(default_factory=set)
    reference_images: set[int] = field(default_factory=set)
    sources: dict[str, str] = field(default_factory=dict)


def _picture(rng: np.random.Generator, size: int, label: str) -> Image.Image:
    """A random smooth picture; ``label`` goes into a PNG text chunk (must be stripped)."""
    base = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    img = Image.fromarray(base).resize((size, size), Image.Resampling.BICUBIC)
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", f"model: {label}")
    img.info["pnginfo"] = info
    return img


def build_fixture(
    store: Store,
    model_names: tuple[str, ...] = MODEL_NAMES,
    n_prompts: int = 6,
    seeds: int = 2,
    size: int = 64,
    seed: int = 0,
    missing: dict[str, set[int]] | None = None,
    with_reference: bool = True,
) -> Fixture:
    """Models x prompts x seeds images; ``missing[model]`` lists prompt indexes it lacks."""
    rng = np.random.default_rng(seed)
    missing = missing or {}
    sources = {name: f"/srv/ckpt/{name}-SOURCEPATH/unet" for name in model_names}
    model_ids = {
        name: store.add_model(name, "import", source=sources[name]) for name in model_names
    }
    sources[REFERENCE_NAME] = f"/srv/refs/{REFERENCE_NAME}"
    reference_id = store.add_model(REFERENCE_NAME, "reference", source=sources[REFERENCE_NAME])
    everyone = [*model_ids.items()] + ([(REFERENCE_NAME, reference_id)] if with_reference else [])
    store.add_prompts(
        [
            PromptRow(f"a watercolour lighthouse number {k} at dusk", f"p{k}")
            for k in range(n_prompts)
        ],
        "fixture",
    )
    pids = store.prompt_ids("fixture")
    prompt_ids = [pids[("fixture", f"p{k}")] for k in range(n_prompts)]
    fx = Fixture(model_ids, reference_id, prompt_ids, sources=sources)
    for name, mid in everyone:
        for k, pid in enumerate(prompt_ids):
            if k in missing.get(name, set()):
                continue
            for seed_ix in range(seeds):
                stored = store.images.put_image(_picture(rng, size, name))
                iid = store.add_image(
                    mid, pid, stored, seed=seed_ix, source_name=f"{name}/{k}_{seed_ix}.png"
                )
                if name == REFERENCE_NAME:
                    fx.reference_images.add(iid)
                else:
                    fx.images[iid] = (name, pid)
        if name != REFERENCE_NAME:  # one broken image per model, never served
            stored = store.images.put_image(_picture(rng, size, name))
            iid = store.add_image(mid, prompt_ids[0], stored, seed=99, broken="black")
            fx.broken.add(iid)
    return fx
