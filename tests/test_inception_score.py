"""The Inception Score (``is``) against torch-fidelity, and ``is`` / ``div-lpips`` end to end.

torch-fidelity is the reference twice: its ``isc_features_to_metric`` on the same logits,
and its whole ``calculate_metrics(isc=True)`` on a folder of the same images through the
same random Inception weights (``scoring.testing.tiny_extractors``). Then the two new
model-level metrics through `arena distribution` to the leaderboard, the agreement
report, the exports and report.html.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from arena.cli import main
from arena.storage.store import PromptRow, Store
from scoring import _compat  # noqa: F401  (torchvision shim, before torch-fidelity)
from scoring.distribution import stats as dist
from scoring.distribution.feature_cache import load_cached
from scoring.distribution.features import INCEPTION, InceptionExtractor
from scoring.distribution.lpips_div import LpipsAlex
from scoring.distribution.run import run
from scoring.testing.tiny_extractors import write_all


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    write_all(root)
    return root


@pytest.fixture(scope="module")
def inception_path(weights_dir):
    return weights_dir / INCEPTION.repo_id / INCEPTION.filename


@pytest.mark.parametrize(("n", "shuffle"), [(37, True), (100, True), (23, False)])
def test_inception_score_is_torch_fidelitys_on_the_same_logits(n, shuffle):
    from torch_fidelity.metric_isc import isc_features_to_metric

    logits = np.random.default_rng(n).normal(0, 3, (n, 1008)).astype(np.float32)
    ours = dist.inception_score(logits, shuffle=shuffle)
    theirs = isc_features_to_metric(torch.from_numpy(logits), 10, shuffle, 2020)
    assert ours.value == pytest.approx(theirs["inception_score_mean"], rel=1e-12)
    assert ours.std == pytest.approx(theirs["inception_score_std"], rel=1e-9)
    assert ours.value > 1.5 and ours.n == n and "fewer than 50,000" in ours.warning


def test_inception_score_needs_one_image_per_split():
    est = dist.inception_score(np.zeros((9, 1008)))
    assert np.isnan(est.value) and "at least 10 images (one per split); got 9" in est.warning


def test_logits_head_of_a_mixed_size_batch(store, inception_path):
    """Asking the cache for the logits runs Inception once per shape and stores the pool
    features beside them; the logits are torch-fidelity's 'logits_unbiased' of each image."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    from scoring.distribution.feature_cache import cached_features

    rng = np.random.default_rng(4)
    images = [_image(rng, 30.0, *((40, 56) if k % 2 else (48, 32))) for k in range(4)]
    mid = store.add_model("mixed", "import")
    ids = [
        store.add_image(mid, None, store.images.put_image(img), seed=k)
        for k, img in enumerate(images)
    ]
    extractor = InceptionExtractor.load(inception_path)
    head = extractor.head("inception-logits")
    logits = cached_features(store, head, ids, batch_size=4)
    assert logits.shape == (4, 1008) and extractor.passes == 2  # one pass per size
    pool = cached_features(store, extractor, ids, batch_size=4)
    assert extractor.passes == 2 and pool.shape == (4, 2048)  # stored by the same passes
    reference = FeatureExtractorInceptionV3(
        "ref", ["logits_unbiased"], feature_extractor_weights_path=str(inception_path)
    )
    for k, img in enumerate(images):
        pixels = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None]
        with torch.no_grad():
            expected = reference(pixels)[0].numpy()[0]
        np.testing.assert_allclose(logits[k], expected, rtol=1e-5, atol=1e-5)
    assert (
        head.key.startswith("inception-logits@")
        and head.key.split("#")[1] == (extractor.key.split("#")[1])
    )
    with pytest.raises(ValueError, match="has no output 'logits'"):
        extractor.head("logits")


def _image(rng, tint, h=48, w=40):
    arr = rng.integers(0, 256, (h, w, 3)).astype(np.float64)
    return Image.fromarray(np.clip(arr * 0.6 + tint, 0, 255).astype(np.uint8))


def _fill(store, plan, order=1):
    """``plan``: (model, prompt, seed, image); ``order=-1`` inserts all in reverse."""
    prompts = sorted({p for _m, p, _s, _i in plan})[::order]
    store.add_prompts([PromptRow(f"a {p}", p) for p in prompts], "set")
    pids = store.prompt_ids("set")
    mids: dict[str, int] = {}
    for model, prompt, seed, image in plan[::order]:
        if model not in mids:
            kind = "reference" if model == "real" else "import"
            mids[model] = store.add_model(model, kind)
        pid = None if model == "real" else pids[("set", prompt)]
        store.add_image(mids[model], pid, store.images.put_image(image), seed=seed)


def _plan(models=("calm", "wild"), prompts=4, seeds=3):
    rng = np.random.default_rng(11)
    plan = [("real", "p0", k, _image(rng, 120.0)) for k in range(3)]
    for m, model in enumerate(models):
        for p in range(prompts):
            for seed in range(seeds):
                plan.append((model, f"p{p}", seed, _image(rng, 30.0 + 60 * m)))
    return plan


@pytest.mark.slow  # the full-size (random) Inception-v3 on CPU
def test_is_through_the_job_is_torch_fidelitys_calculate_metrics(store, inception_path, tmp_path):
    """One model's 12 images: our cached-logit IS equals torch-fidelity's own pipeline
    (folder of PNGs -> its Inception -> isc) when the files are named in pixel-hash order,
    the order our rows are read in. One Inception pass per image fills both caches."""
    import torch_fidelity

    rng = np.random.default_rng(3)
    plan = [("real", "p0", k, _image(rng, 100.0)) for k in range(3)]
    plan += [("gen", f"p{k % 5}", k, _image(rng, 20.0 + 15 * k)) for k in range(12)]
    _fill(store, plan)
    extractor = InceptionExtractor.load(inception_path)
    found = run(
        store,
        ["is", "kid"],
        "real",
        batch_size=5,
        progress=False,
        extractors={"inception": extractor},
        kid_subsets=3,
    )
    by = {r.metric: r for r in found}
    assert extractor.images == 15  # 12 + 3, each through the network once
    ids = store.images_frame().image_id.tolist()
    logits_key = extractor.head("inception-logits").key
    assert len(load_cached(store, logits_key, ids)) == 15  # the reference's logits too
    assert len(load_cached(store, extractor.key, ids)) == 15
    rows = store.images_frame()
    rows = rows[rows.model == "gen"].sort_values("sha256")
    folder = tmp_path / "gen"
    folder.mkdir()
    for k, sha in enumerate(rows.sha256):
        Image.open(store.images.path_for(sha)).save(folder / f"{k:03d}.png")
    theirs = torch_fidelity.calculate_metrics(
        input1=str(folder),
        isc=True,
        feature_extractor_weights_path=str(inception_path),
        cuda=False,
        cache=False,
        save_cpu_ram=True,  # no DataLoader worker processes
        verbose=False,
        batch_size=7,
    )
    got = by["is"]
    assert got.value == pytest.approx(theirs["inception_score_mean"], abs=1e-5)
    assert got.std == pytest.approx(theirs["inception_score_std"], abs=1e-5)
    assert got.value > 1.0 and got.std > 0  # a real spread, not a degenerate 1 ± 0
    assert got.reference == "" and got.n == 12 and "fewer than 50,000" in got.warning
    assert got.details["features"] == logits_key and got.details["splits"] == 10
    # A later FID reads the cached pool features: the network does not run again.
    run(store, ["fid", "is"], "real", progress=False, extractors={"inception": extractor})
    assert extractor.images == 15


@pytest.mark.slow  # the full-size (random) Inception-v3 on CPU
def test_is_and_div_lpips_do_not_move_with_ids_or_insertion_order(tmp_path, weights_dir):
    plan = _plan()
    results = []
    for order in (1, -1):
        from arena.config import load_settings

        store = Store(load_settings(env={}, workspace=str(tmp_path / f"ws{order}")))
        _fill(store, plan, order)
        extractors = {
            "inception": InceptionExtractor.load(weights_dir / INCEPTION.repo_id),
            LpipsAlex.name: LpipsAlex.load({"div-lpips": str(weights_dir)}),
        }
        found = run(
            store, ["is", "div-lpips"], "real", progress=False, batch_size=4, extractors=extractors
        )
        results.append({(r.model, r.metric): (r.value, r.std, r.n) for r in found})
        ids = store.images_frame().set_index("sha256").image_id
        results[-1]["ids"] = ids.sort_index().tolist()
        store.close()
    assert results[0].pop("ids") != results[1].pop("ids")  # other ids for the same images
    assert results[0] == results[1]  # exactly
    assert all(np.isfinite(v[0]) for v in results[0].values())


@pytest.mark.slow  # the full-size (random) Inception-v3 on CPU
def test_is_and_div_lpips_reach_the_board_agreement_exports_and_report(
    store, weights_dir, tmp_path, monkeypatch, capsys
):
    from arena.demo.raters import simulate_votes
    from arena.reports.export import export_workspace, read_table
    from arena.reports.leaderboard import LeaderboardService
    from arena.stats.agreement import agreement_report

    monkeypatch.setenv("ARENA_WEIGHTS_DIR", str(weights_dir))  # found like real weights
    models = ("calm", "wild", "mid")
    _fill(store, _plan(models))
    argv = ["--workspace", str(store.workspace), "distribution", "--metrics", "is,div-lpips"]
    argv += ["--reference", "real", "--device", "cpu", "--batch-size", "6", "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "div-lpips" in printed and "is " in printed and "fewer than 50,000" in printed
    simulate_votes(store, 300, strengths={"calm": -1.0, "mid": 0.0, "wild": 1.0})
    board = LeaderboardService(store.with_settings(bootstrap_rounds=0)).get().frame
    board = board.set_index("model")
    for column in ("is", "is_std", "div-lpips"):
        assert np.isfinite(board.loc[list(models), column].to_numpy(float)).all(), column
    numbers = store.model_metrics_frame()
    report = agreement_report(
        store.votes_frame(),
        store.scores_frame(),
        np.random.default_rng(0),
        images=store.images_frame(),
        rounds=20,
        model_metrics=numbers,
    )
    corr = report.correlations.set_index("metric")
    for metric in ("is", "div-lpips"):
        assert corr.loc[metric, "level"] == "model" and corr.loc[metric, "n_models"] == 3
    export_workspace(store, tmp_path / "out", rounds=20)
    table = read_table(tmp_path / "out" / "model_metrics.csv")
    assert set(table.metric) == {"is", "div-lpips"} and len(table) == 6
    assert table.reference.isna().all() and table.higher_is_better.astype(bool).all()
    lpips_key = table[table.metric == "div-lpips"].extractor.iloc[0]
    assert lpips_key.startswith("lpips-alex@v0.1#")
    page = (tmp_path / "out" / "report.html").read_text()
    assert "div-lpips" in page and "inception-logits" in page


def test_help_lists_the_new_metrics(capsys):
    with pytest.raises(SystemExit):
        main(["distribution", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "is (Inception Score" in text and "div-lpips (DreamBooth DIV" in text
    assert "diversity (CLIP-cosine diversity" in text
