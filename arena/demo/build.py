"""The offline demo workspace: a project-written prompt set and the demo models' images.

Nothing here needs weights or a network. ``data/demo_prompts.csv`` holds 42
booru-style tag prompts (``1girl, red hair, blue dress, outdoors``) that
``arena.demo.scenes`` parses into simple scenes of shapes and colours. The four
procedural models of ``arena.demo.models`` render each prompt at 3 seeds. A fifth
set, ``demo-real`` (kind ``reference``), is the faithful renderer at other seeds: the
"real images" of model-level metrics (FID/KID against a reference set,
``arena.demo.model_metrics``); it is never shown to raters. Votes come from the
simulated raters of ``arena.demo.raters``.
"""

from __future__ import annotations

from pathlib import Path

from arena.demo.models import DEMO_MODELS, image_rngs, render
from arena.storage.intake_verbs import NewImage
from arena.storage.store import Store

DEMO_PROMPTS = Path(__file__).resolve().parents[2] / "data" / "demo_prompts.csv"
DEMO_PROMPT_SET = "demo"
DEMO_SEEDS = (0, 1, 2)
REFERENCE_MODEL = "demo-real"
REFERENCE_SEEDS = (100, 101)


def build_demo(store: Store, seed: int = 0) -> dict[str, int]:
    """Write the demo prompts, models and images into ``store``; returns counts added.

    Idempotent: what is already there is kept (images are matched by pixel hash).
    """
    from arena.intake.prompts import import_prompts

    prompts = import_prompts(store, DEMO_PROMPTS, DEMO_PROMPT_SET)
    frame = store.prompts_frame()
    frame = frame[frame.prompt_set == DEMO_PROMPT_SET].reset_index(drop=True)
    tags = dict(zip(frame.prompt_id, frame.tags, strict=True))
    # The sources name the module that first built the demo: a workspace built then
    # must keep matching them (add_model refuses a changed source).
    models = {
        name: store.add_model(name, "demo", source=f"arena.demo.build:{name}", description=desc)
        for name, desc in DEMO_MODELS.items()
    }
    ref_id = store.add_model(
        REFERENCE_MODEL,
        "reference",
        source="arena.demo.build:faithful",
        description=(
            "Reference ('real') images for model-level metrics such as FID/KID: the faithful "
            "renderer at seeds "
            + ", ".join(map(str, REFERENCE_SEEDS))
            + ". Never shown to raters: matchmaking must exclude models of kind 'reference'."
        ),
    )
    jobs = [
        (model_id, name, m_index, seeds)
        for m_index, (name, model_id) in enumerate(models.items())
        for seeds in [DEMO_SEEDS]
    ] + [(ref_id, "faithful", 0, REFERENCE_SEEDS)]
    added = 0
    for model_id, renderer, m_index, seeds in jobs:
        images = []
        for p_index, prompt_id in enumerate(sorted(tags)):
            for image_seed in seeds:
                scene_rng, model_rng = image_rngs(seed, p_index, image_seed, m_index)
                img = render(renderer, tags[prompt_id], scene_rng, model_rng)
                stored = store.images.put_image(img)
                images.append(
                    NewImage(
                        stored.sha256,
                        stored.width,
                        stored.height,
                        prompt_id=int(prompt_id),
                        seed=image_seed,
                        params={"renderer": renderer, "demo_seed": seed},
                        source_name=f"demo:{renderer}",
                    )
                )
        added += sum(clash is None for clash in store.add_images(model_id, images))
    return {"prompts": prompts.added, "images": added}
