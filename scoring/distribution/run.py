"""`arena distribution`: model-level metrics of every model against a reference set.

Reads images from the workspace, gets features through the cache
(``scoring.distribution.feature_cache.cached_features``: the reference set's features
are computed once per extractor and reused for every model and every later run),
computes the numbers with the pure functions of ``scoring.distribution.stats`` and
``.mmd`` and stores one ``model_metrics`` row per (model, metric, reference) with n,
the spread and the sample-size warning.

Metrics and their features:

==========  =====================  ==============================================
kid, fid    inception              KID mean ± std over subsets; FID
is          inception-logits       Inception Score, mean ± std over 10 splits
cmmd        clip-l14-336           1000 · MMD²(RBF σ=10)
fd-dino     dinov2-l14             Fréchet distance
diversity   clip-l14-336           mean within-prompt pairwise cosine distance
div-lpips   lpips-alex (AlexNet)   mean within-prompt pairwise LPIPS (DreamBooth DIV)
as          anomaly (DINOv2)       2-D KS distance of (complexity, vulnerability)
==========  =====================  ==============================================

``is``, ``diversity`` and ``div-lpips`` describe a model's own images: their rows have
no reference set (``""``).

``by`` ("category" or "prompt-set") computes the same numbers over each prompt
category's (or set's) images of each model, against the whole reference set, and stores
them under their own ``slice`` (``category=<name>``; :mod:`scoring.distribution.guards`),
so the whole-model rows stay. Every row against a reference set carries a warning when
the model's image sizes differ from the reference set's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from scoring.distribution import guards, mmd
from scoring.distribution import stats as dist
from scoring.distribution.feature_cache import cached_features
from scoring.distribution.features import EXTRACTORS, Extractor
from scoring.distribution.lpips_div import LpipsAlex, group_means
from scoring.distribution.pairing import PairingError, paired_pool
from scoring.sharding import Ranks
from scoring.weights import WeightSources

#: Each model-level metric and whether higher is better: distances to the reference set
#: are better low, within-prompt diversity and the Inception Score high. Stored beside
#: every number written.
HIGHER_IS_BETTER: dict[str, bool] = {
    "kid": False,
    "fid": False,
    "cmmd": False,
    "fd-dino": False,
    "diversity": True,
    "as": False,
    "is": True,
    "div-lpips": True,
}
METRICS = tuple(HIGHER_IS_BETTER)
#: Numbers of a model's own images, with no reference set (their rows' reference is "").
REFERENCE_FREE = ("diversity", "is", "div-lpips")
EXTRACTOR_FOR = {
    "kid": "inception",
    "fid": "inception",
    "is": "inception-logits",
    "cmmd": "clip-l14-336",
    "diversity": "clip-l14-336",
    "fd-dino": "dinov2-l14",
}
# Outputs of another extractor's forward pass (Extractor.head) -> that extractor.
HEADS = {"inception-logits": "inception"}
# --weights NAME=PATH: the names a user may give for each extractor.
WEIGHT_NAMES = {
    "inception": ("inception", "kid", "fid", "is"),
    "clip-l14-336": ("clip-l14-336", "cmmd", "diversity"),
    "dinov2-l14": ("dinov2-l14", "fd-dino", "dinov2"),
}


class DistributionError(ValueError):
    """A request that cannot be computed; the message says why and how to fix it."""


@dataclass
class Result:
    model: str
    metric: str
    reference: str
    value: float | None
    std: float | None
    n: int
    warning: str = ""
    details: dict = field(default_factory=dict)
    slice: str = ""  # "" all the model's images; else category=<name> / prompt_set=<name>


def parse_metrics(text: str | Sequence[str]) -> list[str]:
    names = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for raw in names:
        name = raw.strip().lower()
        if not name:
            continue
        if name not in METRICS:
            raise DistributionError(
                f"unknown model-level metric {name!r}; choose from {', '.join(METRICS)}."
            )
        if name not in out:
            out.append(name)
    if not out:
        raise DistributionError(f"no metric given; choose from {', '.join(METRICS)}.")
    return out


def _weights_for(extractor: str, weights: dict[str, str]) -> str | None:
    for name in WEIGHT_NAMES[HEADS.get(extractor, extractor)]:
        if name in weights:
            return weights[name]
    return None


def _frames(store, reference: str, models: Sequence[str] | None, paired: bool = True):
    everything = store.images_frame(include_broken=True)
    images = everything[everything["broken"].isna()]
    kinds = dict(zip(images.model, images.model_kind, strict=False))
    known = set(store.model_names(include_reference=True))
    if reference not in known:
        refs = sorted(
            m
            for m in store.model_names(include_reference=True)
            if m not in kinds or kinds[m] == "reference"
        )
        raise DistributionError(
            f"unknown reference set {reference!r} (reference sets: {', '.join(refs) or 'none'}); "
            "add one with `arena reference add FOLDER --set NAME`."
        )
    ref_rows = images[images.model == reference]
    if ref_rows.empty:
        raise DistributionError(f"reference set {reference!r} has no usable images.")
    if (ref_rows.model_kind != "reference").any():
        raise DistributionError(
            f"{reference!r} is a {ref_rows.model_kind.iloc[0]} model, not a reference set; "
            "reference sets are added with `arena reference add`."
        )
    pool = images[images.model_kind != "reference"]
    if models:
        missing = sorted(set(models) - set(pool.model))
        if missing:
            raise DistributionError(
                f"no images for model(s) {', '.join(missing)}; known models with images: "
                f"{', '.join(sorted(set(pool.model))) or 'none'}."
            )
        pool = pool[pool.model.isin(list(models))]
    if pool.empty:
        raise DistributionError("no generated images in the workspace to compare.")
    try:  # the compared models' common set (every image with paired off)
        pool, pairing = paired_pool(everything, sorted(set(pool.model)), paired)
    except PairingError as exc:
        raise DistributionError(str(exc)) from None
    # In pixel-hash order, not id order: ids follow insertion order (import order, or
    # which rank of a sharded job stored an image first), and KID's random subsets, the
    # diversity pairs and float sums depend on the order of rows; the hash does not.
    return _by_content(ref_rows), _by_content(pool), pairing


def _by_content(rows):
    return rows.sort_values(["sha256", "image_id"], kind="stable").reset_index(drop=True)


def run(
    store,
    metrics: Sequence[str],
    reference: str,
    models: Sequence[str] | None = None,
    device: str = "cpu",
    batch_size: int = 32,
    num_workers: int = 0,
    weights: dict[str, str] | None = None,
    sources: WeightSources | None = None,
    seed: int = 0,
    kid_subsets: int = mmd.KID_SUBSETS,
    kid_subset_size: int = mmd.KID_SUBSET_SIZE,
    progress: bool = True,
    extractors: dict[str, Extractor] | None = None,
    ranks: Ranks | None = None,
    by: str | None = None,
    paired: bool | None = None,
) -> list[Result]:
    """Compute and store ``metrics`` for each model against ``reference``; returns the rows.

    ``weights`` maps an extractor or metric name to an explicit path; ``sources`` is
    where weights are looked for otherwise (scoring.weights.WeightSources, built by
    the command from the workspace's settings). ``extractors`` (name -> loaded
    extractor) overrides loading; the benchmark and the tests pass their own to count
    the work done. Under a launcher (``ranks``) every rank extracts its share of the
    missing features and anomaly points; rank 0 alone computes and stores the numbers
    (the other ranks return an empty list). ``by`` ("category" or "prompt-set") computes
    each number per prompt category or set instead of over all a model's images
    (:func:`scoring.distribution.guards.with_slices`). ``paired`` (default: the store's
    setting ``paired_metrics``, on unless turned off) computes every model on the common
    set of the compared models (``scoring.distribution.pairing``); each row's
    ``details["common_set"]`` records it.
    """
    metrics = parse_metrics(metrics)
    paired = bool(store.settings.paired_metrics) if paired is None else bool(paired)
    weights = dict(weights or {})
    ranks = ranks or Ranks()
    ref_rows, pool, pairing = _frames(store, reference, models, paired)
    pool = guards.with_slices(pool, store.prompts_frame(), by)
    loaded = dict(extractors or {})
    for name in dict.fromkeys(EXTRACTOR_FOR[m] for m in metrics if m in EXTRACTOR_FOR):
        base = HEADS.get(name, name)
        if base not in loaded:
            loaded[base] = EXTRACTORS[base].load(
                _weights_for(base, weights), device=device, sources=sources
            )
        if name not in loaded:  # a head: the same network, another output of its pass
            loaded[name] = loaded[base].head(name)
    if "div-lpips" in metrics and LpipsAlex.name not in loaded:
        loaded[LpipsAlex.name] = LpipsAlex.load(weights, device=device, sources=sources)
    # Every feature the numbers need, each rank extracting its batches of the missing ones;
    # the numbers themselves are rank 0's, once all ranks' features are stored.
    for name, ids in _feature_work(metrics, ref_rows, pool).items():
        cached_features(
            store, loaded[name], ids, batch_size, num_workers, progress=progress, ranks=ranks
        )

    def feats(name: str, ids) -> np.ndarray:
        return cached_features(
            store, loaded[name], list(ids), batch_size, num_workers, progress=progress
        )

    ref_feats = {
        name: feats(name, ref_rows.image_id)
        for name in loaded
        if any(EXTRACTOR_FOR.get(m) == name and m not in REFERENCE_FREE for m in metrics)
    }
    anomaly, anomaly_key = _anomaly_points(
        store,
        metrics,
        weights,
        sources,
        device,
        batch_size,
        num_workers,
        progress,
        loaded,
        image_ids=[*ref_rows.image_id, *pool.image_id],
        ranks=ranks,
    )
    lpips_means = {}
    if "div-lpips" in metrics:  # each rank its prompt groups; rank 0 gets them all
        lpips_net = loaded[LpipsAlex.name]
        lpips_means = group_means(
            store, lpips_net, pool, batch_size, num_workers, progress=progress, ranks=ranks
        )
    if not ranks.is_main:
        return []
    model_ids = {name: store.model_id(name) for name in sorted(set(pool.model))}
    kid_cache: dict = {}
    results: list[Result] = []
    counts = guards.slice_counts(pool)
    units = [
        (model, part, rows)
        for model in sorted(model_ids)
        for part, rows in guards.units(pool[pool.model == model], by)
    ]
    for model, part, rows in units:
        size_check = guards.size_check(rows, ref_rows)
        for metric in metrics:
            try:
                est = _one(
                    metric,
                    rows,
                    ref_rows,
                    feats,
                    ref_feats,
                    anomaly,
                    seed,
                    device,
                    kid_subsets,
                    kid_subset_size,
                    kid_cache,
                    lpips_means,
                )
            except ValueError as exc:  # a slice too small for the estimator (KID/FID < 2)
                if not part:
                    raise
                est = dist.Estimate(value=float("nan"), n=len(rows), warning=f"n/a: {exc}")
            ref_label = "" if metric in REFERENCE_FREE else reference
            details = {**est.details}
            warnings = [est.warning]
            if part:
                details["slice_images"] = len(rows)
                details["slice_warning"] = guards.slice_warning(metric, model, counts[part])
                warnings.append(details["slice_warning"])
            if ref_label and size_check.warning:
                details["size_warning"] = size_check.warning
                details["image_sizes"] = size_check.sizes
                warnings.append(size_check.warning)
            details["warning"] = "; ".join(w for w in warnings if w)
            details["common_set"] = pairing[model]
            if metric in EXTRACTOR_FOR:
                details["features"] = loaded[EXTRACTOR_FOR[metric]].key
            elif metric == "div-lpips":
                details["features"] = loaded[LpipsAlex.name].key
            elif metric == "as":
                details["features"] = anomaly_key
            if metric == "kid":
                details["seed"] = seed
            value = None if est.value is None or not np.isfinite(est.value) else est.value
            store.put_model_metric(
                model_ids[model],
                metric,
                ref_label,
                value,
                est.std,
                est.n,
                details,
                higher_is_better=HIGHER_IS_BETTER[metric],
                slice=part,
            )
            results.append(
                Result(
                    model,
                    metric,
                    ref_label,
                    value,
                    est.std,
                    est.n,
                    details["warning"],
                    details,
                    slice=part,
                )
            )
    return results


def _one(
    metric, rows, ref_rows, feats, ref_feats, anomaly, seed, device, subsets, size, cache, lpips
):
    if metric == "diversity":
        x = feats("clip-l14-336", rows.image_id)
        keep = rows.prompt_id.notna().to_numpy()
        return dist.diversity(x[keep], rows.prompt_id.to_numpy()[keep])
    if metric == "is":  # rows in pixel-hash order: the splits do not follow insertion order
        return dist.inception_score(feats("inception-logits", rows.image_id))
    if metric == "div-lpips":  # the prompts of these rows (a slice keeps its own)
        model, prompts = rows.model.iloc[0], set(rows.prompt_id.dropna())
        per_prompt = [v for (m, p), v in sorted(lpips.items()) if m == model and p in prompts]
        return dist.prompt_average(per_prompt, len(rows), "div-lpips")
    if metric == "as":
        return _as_estimate(rows, ref_rows, anomaly)
    name = EXTRACTOR_FOR[metric]
    x, y = feats(name, rows.image_id), ref_feats[name]
    if metric == "kid":
        kid_device = device if str(device).startswith("cuda") else None
        return mmd.kid(x, y, np.random.default_rng(seed), subsets, size, kid_device, cache)
    if metric == "fid":
        return dist.fid_from_features(x, y, "FID")
    if metric == "fd-dino":
        return dist.fid_from_features(x, y, "FD-DINO")
    return mmd.cmmd(x, y)


def _feature_work(metrics, ref_rows, pool) -> dict[str, list[int]]:
    """Extractor name -> the image ids whose features the metrics read (sorted)."""
    work: dict[str, set[int]] = {}
    for metric in metrics:
        name = EXTRACTOR_FOR.get(metric)
        if name is None:
            continue
        ids = work.setdefault(name, set())
        ids.update(int(i) for i in pool.image_id)
        if metric not in REFERENCE_FREE:  # these are of a model's own images
            ids.update(int(i) for i in ref_rows.image_id)
    return {name: sorted(ids) for name, ids in work.items()}


def _anomaly_points(
    store,
    metrics,
    weights,
    sources,
    device,
    batch_size,
    num_workers,
    progress,
    loaded,
    image_ids,
    ranks=None,
):
    """(image id -> (complexity, vulnerability), the DINOv2 key), scoring the missing ones
    of ``image_ids`` (the reference set's and the compared models' images: ~40 DINOv2
    passes each, so never the rest of the workspace) with the runner. The DINOv2 already
    loaded for FD-DINO (or passed in) is reused unless ``anomaly`` weights of their own
    are given."""
    if "as" not in metrics:
        return {}, ""
    from sqlalchemy import select

    from arena.storage import db
    from scoring.metrics import runner
    from scoring.metrics.anomaly import AnomalyScore

    if "dinov2-l14" in loaded and "anomaly" not in weights:
        metric = AnomalyScore(loaded["dinov2-l14"])
    else:
        metric = AnomalyScore.from_pretrained(
            weights.get("anomaly") or _weights_for("dinov2-l14", weights),
            device=device,
            sources=sources,
        )
    runner.run(
        store,
        [metric],
        batch_size=batch_size,
        num_workers=num_workers,
        device=device,
        progress=progress,
        image_ids=image_ids,
        ranks=ranks,
    )
    if ranks is not None:
        ranks.barrier()  # every rank's (complexity, vulnerability) rows are stored
    with store.session() as s:
        rows = s.execute(
            select(db.Score.image_id, db.Score.details).where(
                db.Score.metric == metric.name, db.Score.version == metric.version
            )
        ).all()
    points = {
        i: (d["complexity"], d["vulnerability"])
        for i, d in rows
        if isinstance(d, dict) and "complexity" in d and d.get("features") == metric.weights_key
    }
    return points, metric.weights_key


def _as_estimate(rows, ref_rows, anomaly) -> dist.Estimate:
    gen = np.array([anomaly[i] for i in rows.image_id if i in anomaly], dtype=np.float64)
    ref = np.array([anomaly[i] for i in ref_rows.image_id if i in anomaly], dtype=np.float64)
    if len(gen) < 3 or len(ref) < 3:
        return dist.Estimate(
            value=float("nan"),
            n=min(len(gen), len(ref)),
            warning="the Anomaly Score needs (complexity, vulnerability) of at least 3 images "
            "per set",
        )
    d, p = dist.ks2d(ref, gen)
    with np.errstate(divide="ignore", invalid="ignore"):
        as_i = gen[:, 1] / gen[:, 0]
    n = min(len(gen), len(ref))
    warning = (
        "" if n >= 20 else f"2-D KS distance on {n} images: the p-value approximation needs n ≳ 20"
    )
    return dist.Estimate(
        value=d,
        n=n,
        warning=warning,
        details={
            "p_value": p,
            "mean_as_i": float(np.nanmean(as_i)),
            "n_generated": len(gen),
            "n_reference": len(ref),
        },
    )


def format_results(results: Sequence[Result]) -> str:
    sliced = any(r.slice for r in results)
    width = max([24, *(len(r.slice) for r in results)]) if sliced else 0
    head = f"{'model':<24} " + (f"{'slice':<{width}} " if sliced else "")
    lines = [head + f"{'metric':<10} {'reference':<16} {'value':>22} {'n':>7}  warning"]
    for r in results:
        if r.value is None:
            shown = "n/a"
        elif r.std is not None:
            shown = f"{r.value:.6g} ± {r.std:.2g}"
        else:
            shown = f"{r.value:.6g}"
        lines.append(
            f"{r.model:<24} "
            + (f"{r.slice:<{width}} " if sliced else "")
            + f"{r.metric:<10} {r.reference or '-':<16} {shown:>22} {r.n:>7}  {r.warning}"
        )
    return "\n".join(lines)
