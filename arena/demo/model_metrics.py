"""Model-level numbers (KID, FID, IS, CMMD, FD-DINO, diversity, DIV-LPIPS, AS) for the demo.

No weights can be downloaded, so the feature networks are seeded random-weight
stand-ins written by ``scoring.testing.tiny_extractors`` -- the one place the product
uses the test stand-ins, on purpose, and every number they give is labelled.
"""

from __future__ import annotations

from arena.demo.build import REFERENCE_MODEL
from arena.demo.models import DEMO_MODELS
from arena.reports.stand_in import STAND_IN_TAG
from arena.storage.store import Store, StoreError

DEMO_WEIGHTS_FOLDER = "demo-weights"


def ml_available() -> str:
    """ "" when the packages the model-level numbers need import, else what is missing."""
    import importlib.util

    needed = ("torch", "torchvision", "open_clip", "transformers", "torch_fidelity")
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if not missing:
        return ""
    return (
        f"the model-level numbers need the ML extras ({', '.join(missing)} missing): "
        "install them with `make install-test` (the pinned CPU torch first, then "
        "`pip install -e '.[ml]'`)."
    )


def demo_model_metrics(store: Store, seed: int = 0, progress: bool = False) -> list:
    """Every model-level number of the demo models (against ``demo-real`` where it has one).

    No weights can be downloaded, so the feature networks are seeded random-weight
    stand-ins (``scoring.testing.tiny_extractors``: torch-fidelity's full Inception-v3, a
    narrow ViT-L-14-336-shaped open_clip CLIP, a tiny DINOv2, LPIPS's AlexNet), written
    in the real file formats under ``<workspace>/demo-weights`` and loaded by the real
    loading code. Every feature and number they give carries the extractor tag
    ``demo-random`` in its key, so the leaderboard, the Agreement tab and the exports
    label them: they rank the demo models but are not FID/KID values of any real
    network. Returns the ``scoring.distribution.run.Result`` rows.
    """
    problem = ml_available()
    if problem:
        raise StoreError(problem)
    if REFERENCE_MODEL not in store.model_names(include_reference=True):
        raise StoreError(
            f"{store.workspace} is not a demo workspace (no {REFERENCE_MODEL!r} reference set); "
            "build the demo into an empty workspace with `arena demo` first."
        )
    from scoring.distribution import run as distribution_run
    from scoring.distribution.features import EXTRACTORS
    from scoring.distribution.lpips_div import LpipsAlex
    from scoring.testing.tiny_extractors import write_all

    folder = store.workspace / DEMO_WEIGHTS_FOLDER
    paths = write_all(folder, seed=seed)
    by_name = {"inception": "inception", "clip-l14-336": "cmmd", "dinov2-l14": "fd-dino"}
    extractors = {
        name: EXTRACTORS[name].load(paths[key]).tagged(STAND_IN_TAG)
        for name, key in by_name.items()
    }
    lpips_weights = {"div-lpips": str(paths["div-lpips"])}
    extractors[LpipsAlex.name] = LpipsAlex.load(lpips_weights).tagged(STAND_IN_TAG)
    return distribution_run.run(
        store,
        distribution_run.METRICS,
        REFERENCE_MODEL,
        models=list(DEMO_MODELS),
        seed=seed,
        progress=progress,
        extractors=extractors,
    )
