"""`arena distribution --by category|prompt-set` and the image-size guard, on tiny extractors.

The tiny random-weight Inception, CLIP and DINOv2 of ``scoring.testing.tiny_extractors``
(the fixtures of tests/test_distribution_cli.py) run through the real loading code. The
check that matters: a model's number over one category equals the whole-model number of
a second workspace that holds only that category's images (same pixels, so the same
features and the same pixel-hash order), for every metric.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from arena.cli import main
from arena.config import load_settings
from arena.intake.reference import add_reference_folder
from arena.storage.store import PromptRow, Store
from scoring.distribution.run import format_results, run
from scoring.weights import WeightSources
from tests.test_distribution_cli import weights_dir  # noqa: F401  (tiny extractors)

METRICS = ["kid", "fid", "is", "cmmd", "fd-dino", "diversity"]
# prompt external id -> (category, prompt set)
PROMPTS = {
    "p1": ("animals", "set-a"),
    "p2": ("animals", "set-b"),
    "p3": ("vehicles", "set-a"),
    "p4": ("vehicles", "set-b"),
}
SEEDS = (0, 1, 2)


def _pixels(seed: int, tint: float, size=(48, 48)) -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size[1], size[0], 3)).astype(np.float64)
    return Image.fromarray(np.clip(arr * 0.5 + tint, 0, 255).astype(np.uint8))


def _images(models=("sharp", "dull")) -> dict:
    """(model, prompt, seed) -> picture; the same pixels whichever workspace they go to."""
    tints = {"sharp": 0.0, "dull": 90.0, "wide": 40.0}
    out = {}
    for m_ix, model in enumerate(models):
        for p_ix, ext in enumerate(PROMPTS):
            for seed in SEEDS:
                size = (64, 40) if model == "wide" else (48, 48)
                out[(model, ext, seed)] = _pixels(
                    1000 * m_ix + 10 * p_ix + seed, tints[model], size
                )
    return out


def _fill(store: Store, images: dict, keep=lambda ext: True, prompt_order=None) -> None:
    order = prompt_order or list(PROMPTS)
    rows = [PromptRow(f"prompt {ext}", ext, "", PROMPTS[ext][0]) for ext in order if keep(ext)]
    for prompt_set in ("set-a", "set-b"):
        part = [r for r in rows if PROMPTS[r.external_id][1] == prompt_set]
        if part:
            store.add_prompts(part, prompt_set)
    pids = {ext: pid for (_set, ext), pid in store.prompt_ids().items()}
    model_ids = {}
    for model, ext, seed in images:
        if not keep(ext):
            continue
        if model not in model_ids:
            model_ids[model] = store.add_model(model, "import")
        stored = store.images.put_image(images[(model, ext, seed)])
        store.add_image(model_ids[model], pids[ext], stored, seed=seed)


def _reference(tmp_path, size=(48, 48)):
    folder = tmp_path / f"real-{size[0]}x{size[1]}"
    folder.mkdir()
    for k in range(5):
        _pixels(500 + k, 10.0, size).save(folder / f"r{k}.png")
    return folder


def _store(tmp_path, name) -> Store:
    return Store(load_settings(env={}, workspace=str(tmp_path / name)))


def _run(store, weights, by=None, metrics=METRICS, models=None, paired=None):
    return run(
        store,
        metrics,
        "real",
        models=models,
        batch_size=5,
        sources=WeightSources(weights),
        progress=False,
        kid_subsets=7,
        kid_subset_size=5,
        seed=3,
        by=by,
        paired=paired,
    )


def _values(results, part=""):
    return {(r.model, r.metric): r for r in results if r.slice == part}


CHEAP = ["cmmd", "fd-dino", "diversity"]  # tiny CLIP/DINOv2; Inception is full size


@pytest.mark.parametrize(
    "by,part,keep,metrics",
    [  # every metric once (Inception's 2048-d FID costs seconds on a CPU), cheap ones twice
        ("category", "category=vehicles", lambda ext: PROMPTS[ext][0] == "vehicles", METRICS),
        ("prompt-set", "prompt_set=set-b", lambda ext: PROMPTS[ext][1] == "set-b", CHEAP),
    ],
)
def test_a_slice_equals_the_whole_model_numbers_of_its_images_alone(
    tmp_path,
    weights_dir,  # noqa: F811
    by,
    part,
    keep,
    metrics,
):
    images = _images()
    full = _store(tmp_path, "full")
    _fill(full, images)
    add_reference_folder(full, _reference(tmp_path), "real", workers=1)
    sliced = _values(_run(full, weights_dir, by=by, metrics=metrics), part)
    # A second workspace with only that slice's prompts and images, inserted in another
    # order (the numbers follow the pixels, not ids or insertion order).
    alone = _store(tmp_path, "alone")
    _fill(alone, images, keep, prompt_order=list(PROMPTS)[::-1])
    add_reference_folder(alone, tmp_path / "real-48x48", "real", workers=1)
    whole = _values(_run(alone, weights_dir, metrics=metrics))
    assert set(sliced) == set(whole) == {(m, k) for m in ("sharp", "dull") for k in metrics}
    for key, expected in whole.items():
        got = sliced[key]
        assert got.reference == expected.reference and got.n == expected.n, key
        if expected.value is None:  # IS needs 10 images: n/a in both, for the same reason
            assert got.value is None and expected.warning in got.warning, key
            continue
        assert got.value == pytest.approx(expected.value, rel=1e-9, abs=1e-12), key
        if expected.std is None:
            assert got.std is None
        else:
            assert got.std == pytest.approx(expected.std, rel=1e-9, abs=1e-12), key
    assert sliced[("sharp", "fd-dino")].details["slice_images"] == 6
    # By hand for one number: FD-DINO from the cached features of the slice's images.
    from scoring.distribution import stats
    from scoring.distribution.feature_cache import cached_features
    from scoring.distribution.features import DinoExtractor

    frame = full.images_frame().merge(
        full.prompts_frame()[["prompt_id", "category", "prompt_set"]], on="prompt_id", how="left"
    )
    column, value = part.split("=")
    mine = frame[(frame.model == "dull") & (frame[column] == value)].sort_values("sha256")
    ref = frame[frame.model == "real"].sort_values("sha256")
    dino = DinoExtractor.load(weights_dir / "facebook" / "dinov2-large")
    x = cached_features(full, dino, list(mine.image_id))
    y = cached_features(full, dino, list(ref.image_id))
    assert sliced[("dull", "fd-dino")].value == pytest.approx(
        stats.fid_from_features(x, y, "FD-DINO").value, rel=1e-9
    )
    full.close()
    alone.close()


def test_slices_are_stored_beside_the_whole_model_rows(store, tmp_path, weights_dir):  # noqa: F811
    _fill(store, _images())
    add_reference_folder(store, _reference(tmp_path), "real", workers=1)
    _run(store, weights_dir, metrics=["cmmd", "diversity"])
    before = store.model_metrics_frame().set_index(["model", "metric", "reference"])["value"]
    assert set(store.model_metrics_frame()["slice"]) == {""}
    results = _run(store, weights_dir, by="category", metrics=["cmmd", "diversity"])
    frame = store.model_metrics_frame()
    assert set(frame["slice"]) == {"", "category=animals", "category=vehicles"}
    assert len(frame) == 2 * 2 * 3  # models x metrics x (whole, two categories)
    whole = frame[frame["slice"] == ""].set_index(["model", "metric", "reference"])["value"]
    pd.testing.assert_series_equal(whole, before)  # untouched by the sliced run
    # A re-run replaces its rows; no duplicates.
    _run(store, weights_dir, by="category", metrics=["cmmd", "diversity"])
    assert len(store.model_metrics_frame()) == 12
    printed = format_results(results)
    assert "category=animals" in printed.splitlines()[1] and "slice" in printed.splitlines()[0]


def test_small_and_unequal_slices_are_warned_and_too_small_ones_are_na(
    store,
    tmp_path,
    weights_dir,  # noqa: F811
):
    images = _images()
    for seed in (1, 2):  # dull keeps a single vehicles image of prompt p4
        images.pop(("dull", "p3", seed))
    images.pop(("dull", "p3", 0))
    for seed in (1, 2):
        images.pop(("dull", "p4", seed))
    _fill(store, images)
    add_reference_folder(store, _reference(tmp_path), "real", workers=1)
    # every image (--all-images): on the common set both models would have 1 image each
    res = _values(
        _run(store, weights_dir, by="category", metrics=CHEAP, paired=False), "category=vehicles"
    )
    sharp_fid, dull_fid = res[("sharp", "fd-dino")], res[("dull", "fd-dino")]
    assert "only 6 image(s) in this slice (fewer than 50)" in sharp_fid.warning
    assert "models have 1-6 in this slice" in sharp_fid.warning
    assert "models have 1-6" not in res[("sharp", "cmmd")].warning  # unbiased: no n caveat
    # One image: no covariance, no KID pair: n/a with the reason, not a crashed run.
    assert dull_fid.value is None and "n/a: a covariance needs at least 2" in dull_fid.warning
    # Diversity needs two seeds of a prompt: NaN with its own warning (no exception).
    assert res[("dull", "diversity")].value is None
    assert "no prompt has two or more images" in res[("dull", "diversity")].warning
    stored = store.model_metrics_frame()
    row = stored[
        (stored.model == "dull")
        & (stored.metric == "fd-dino")
        & (stored.slice == "category=vehicles")
    ]
    assert row["value"].isna().all() and row["warning"].str.contains("only 1 image").all()


def test_image_sizes_that_differ_from_the_reference_are_warned_and_stored(
    store,
    tmp_path,
    weights_dir,  # noqa: F811
    capsys,
    monkeypatch,
):
    _fill(store, _images(("sharp", "wide")))
    add_reference_folder(store, _reference(tmp_path), "real", workers=1)
    monkeypatch.setenv("ARENA_WEIGHTS_DIR", str(weights_dir))  # the CLI's weights_dir
    argv = ["--workspace", str(store.workspace), "distribution", "--reference", "real"]
    argv += ["--metrics", "fd-dino,diversity", "--device", "cpu", "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    wide_line = next(
        line for line in printed.splitlines() if line.startswith("wide") and "fd-dino" in line
    )
    assert "image sizes differ from the reference set's" in wide_line
    assert "64x40 (12)" in wide_line and "48x48 (5)" in wide_line
    frame = store.model_metrics_frame().set_index(["model", "metric"])
    wide = frame.loc[("wide", "fd-dino")]
    assert wide["details"]["image_sizes"] == {
        "model": {"most_common": {"64x40": 12}, "distinct": 1},
        "reference": {"most_common": {"48x48": 5}, "distinct": 1},
    }
    assert "image sizes differ" in wide["warning"] and wide["details"]["size_warning"]
    sharp = frame.loc[("sharp", "fd-dino")]
    assert "size_warning" not in sharp["details"] and "image sizes" not in sharp["warning"]
    # Diversity has no reference set: nothing to compare sizes with.
    assert "image sizes" not in frame.loc[("wide", "diversity")]["warning"]


def test_by_without_categories_is_refused_clearly(store, tmp_path, weights_dir):  # noqa: F811
    mid = store.add_model("m", "import")
    store.add_prompts([PromptRow("x", "p1"), PromptRow("y", "p2")], "plain")
    pids = store.prompt_ids("plain")
    for k, ext in enumerate(("p1", "p2")):
        store.add_image(mid, pids[("plain", ext)], store.images.put_image(_pixels(k, 0)), seed=0)
    add_reference_folder(store, _reference(tmp_path), "real", workers=1)
    with pytest.raises(ValueError, match="no image of the compared models has a prompt category"):
        _run(store, weights_dir, by="category", metrics=["cmmd"])
    assert store.model_metrics_frame().empty  # nothing stored
