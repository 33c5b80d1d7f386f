"""The Agreement tab: which automatic metric agrees with the raters, how often, and where not.

Numbers come from :func:`arena.stats.agreement.agreement_report` (pure), computed by
:class:`AgreementService` from the store's frames with the leaderboard's
filters (:class:`arena.reports.leaderboard.Filters`) and cached until votes, rater
exclusions or scores change. Figures are matplotlib ``Figure`` objects from
:mod:`arena.reports.plots`. No torch anywhere on this path.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import gradio as gr
import numpy as np
import pandas as pd

from arena.reports import plots
from arena.reports.leaderboard import STAND_IN_TAG, Filters, LeaderboardError, LeaderboardService
from arena.stats.agreement import (
    CEILING,
    PROTOCOLS,
    AgreementReport,
    agreement_report,
)
from arena.ui.leaderboard_tab import ALL, filter_row

TITLE = "Agreement"
SLICE_KINDS = ("category", "tags", "model pair")


def enabled(settings) -> bool:
    """On the raters' app only with the reveal on: its filters and per-pair slices would
    isolate single votes (arena.reports.public_view); the Admin app always has it."""
    return bool(settings.reveal_models)


@dataclass
class AgreementResult:
    report: AgreementReport
    filters: Filters
    votes_used: int
    seconds: float


class AgreementService:
    """Agreement reports of one store, cached per (database signature, filters, protocol)."""

    def __init__(self, store, max_entries: int = 16):
        self.store = store
        self.settings = store.settings
        self._signature = LeaderboardService(store)
        self._cache: OrderedDict[tuple, AgreementResult] = OrderedDict()
        self._lock = threading.Lock()
        self.max_entries = max_entries
        self.computations = 0

    def options(self) -> dict[str, list[str]]:
        return self._signature.options()

    def get(self, filters: Filters | None = None, slice_protocol: str = "ties_half"):
        filters = filters or Filters()
        key = (self._signature.signature(), filters.key(), slice_protocol)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            result = self._compute(filters, slice_protocol)
            self._cache[key] = result
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
            return result

    def _compute(self, filters: Filters, slice_protocol: str) -> AgreementResult:
        start = time.perf_counter()
        votes = filters.apply(self.store.votes_frame())
        prompts = self.store.prompts_frame()
        images = self.store.images_frame()
        if filters.category or filters.prompt_set:  # metric means over the same prompts
            keep = np.ones(len(prompts), dtype=bool)
            if filters.category:
                keep &= (prompts["category"] == filters.category).to_numpy()
            if filters.prompt_set:
                keep &= (prompts["prompt_set"] == filters.prompt_set).to_numpy()
            images = images[images["prompt_id"].isin(prompts.loc[keep, "prompt_id"])]
        scores = self.store.scores_frame()
        scores = scores[scores["image_id"].isin(images["image_id"])]
        report = agreement_report(
            votes,
            scores,
            np.random.default_rng(self.settings.seed),
            images=images,
            prompts=prompts,
            rounds=max(1, self.settings.bootstrap_rounds),
            slice_protocol=slice_protocol,
            model_metrics=self.store.model_metrics_frame(),
        )
        self.computations += 1
        return AgreementResult(report, filters, len(votes), time.perf_counter() - start)


# -- formatting --------------------------------------------------------------------------------
def _pct(value) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{100 * value:.1f}%"


def _num(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def accuracy_display(accuracy: pd.DataFrame) -> pd.DataFrame:
    """Metric × protocol as readable strings, the human ceiling as the last row."""
    columns = ["Metric", "Protocol", "Accuracy", "95% CI (prompts)", "Wilson 95% CI", "Votes"]
    if accuracy.empty:
        return pd.DataFrame(columns=[*columns, "Tie threshold"])
    rows = []
    for r in accuracy.itertuples(index=False):
        rows.append(
            {
                "Metric": r.metric,
                "Protocol": r.description if r.metric != CEILING else "leave-one-out majority",
                "Accuracy": _pct(r.accuracy),
                "95% CI (prompts)": f"{_pct(r.ci_low)} – {_pct(r.ci_high)}",
                "Wilson 95% CI": f"{_pct(r.wilson_low)} – {_pct(r.wilson_high)}",
                "Votes": int(r.n),
                "Tie threshold": r.tie_threshold,
            }
        )
    return pd.DataFrame(rows)


def correlation_display(corr: pd.DataFrame) -> pd.DataFrame:
    """One row per metric: per-image means first, then model-level numbers (KID, FID ...),
    whose ρ and τ are oriented so that > 0 means the metric agrees with the raters."""
    columns = ["Metric", "Level", "Models", "Spearman ρ", "Kendall τ", "ρ with metric's own BT"]
    if corr.empty:
        return pd.DataFrame(columns=columns)
    return pd.DataFrame(
        {
            "Metric": corr["metric"],
            "Level": corr["level"],
            "Models": corr["n_models"],
            "Spearman ρ": [
                f"{_num(v, 2)} [{_num(lo, 2)}, {_num(hi, 2)}]"
                for v, lo, hi in zip(
                    corr.spearman, corr.spearman_low, corr.spearman_high, strict=True
                )
            ],
            "Kendall τ": [
                f"{_num(v, 2)} [{_num(lo, 2)}, {_num(hi, 2)}]"
                for v, lo, hi in zip(corr.kendall, corr.kendall_low, corr.kendall_high, strict=True)
            ],
            "ρ with metric's own BT": [
                f"{_num(v, 2)} [{_num(lo, 2)}, {_num(hi, 2)}]"
                for v, lo, hi in zip(
                    corr.spearman_bt, corr.spearman_bt_low, corr.spearman_bt_high, strict=True
                )
            ],
        }
    )


def boards_display(boards: pd.DataFrame) -> pd.DataFrame:
    """Model × decider ratings (human first), sorted by the human rating."""
    if boards.empty:
        return pd.DataFrame(columns=["Model"])
    wide = boards.pivot(index="model", columns="decider", values="rating")
    deciders = ["human", *[d for d in wide.columns if d != "human"]]
    wide = wide[deciders].sort_values("human", ascending=False)
    out = pd.DataFrame({"Model": wide.index})
    for d in deciders:
        ranks = boards[boards.decider == d].set_index("model")["rank"]
        out[d] = [f"{wide.at[m, d]:.0f} (#{int(ranks[m])})" for m in wide.index]
    return out


def extras_markdown(report: AgreementReport) -> str:
    lines = []
    if len(report.position_bias):
        p = report.position_bias.iloc[0]
        lines.append(
            f"**Position bias:** the left image won {_pct(p.left_win_rate)} of "
            f"{int(p.decisive_votes)} decisive votes (95% CI {_pct(p.ci_low)} – "
            f"{_pct(p.ci_high)}; binomial test against 50%: p = {p.p_value:.3g})."
        )
    if len(report.reliability):
        a = report.reliability.iloc[0]
        lines.append(
            f"**Inter-rater reliability:** Krippendorff's α (nominal) = {_num(a.alpha)} "
            f"[{_num(a.alpha_low)}, {_num(a.alpha_high)}] over {int(a.units)} image pairs "
            f"with several raters ({int(a.votes)} votes, {int(a.raters)} raters)."
        )
    return "\n\n".join(lines)


def agreement_outputs(
    service: AgreementService,
    category=None,
    prompt_set=None,
    rater_kind=None,
    since=None,
    until=None,
    slice_protocol="ties_half",
    slice_kind="category",
):
    """Everything the tab shows, for these filters."""

    def pick(value):
        return None if value in (None, "", ALL) else value

    empty = (
        accuracy_display(pd.DataFrame()),
        None,
        correlation_display(pd.DataFrame()),
        None,
        boards_display(pd.DataFrame()),
        None,
        "",
    )
    try:
        filters = Filters(pick(category), pick(prompt_set), pick(rater_kind), since, until)
        filters.key()
        result = service.get(filters, slice_protocol or "ties_half")
    except (LeaderboardError, ValueError) as exc:
        return (f"**Cannot compute agreement:** {exc}", *empty)
    report = result.report
    if result.votes_used == 0:
        return (f"No votes yet for {filters.describe()}.", *empty)
    metrics = report.info["metrics"]
    model_level = report.info.get("model_metrics", [])
    stand_in = any(k.endswith(f"+{STAND_IN_TAG}") for k in report.info["model_metric_features"])
    summary = (
        f"**{result.votes_used}** votes ({filters.describe()}) on "
        f"**{report.info['prompts']}** prompts · {len(report.info['models'])} models · "
        f"metrics: {', '.join(metrics) or 'none yet (run `arena score`)'}. "
        f"Intervals: 95%, bootstrap over prompts ({report.info['rounds']} rounds) unless "
        f"marked Wilson. Computed in {result.seconds:.1f}s."
    )
    if model_level:
        summary += (
            f"\n\nModel-level metrics: {', '.join(model_level)} (one number per model over all "
            "its images, not filtered; ρ and τ oriented so that > 0 = agrees with the raters, "
            "e.g. lower FID for a higher rating; intervals bootstrap the human ratings only)."
        )
        if stand_in:
            summary += (
                f" **⚠ Demo numbers: computed with random-weight stand-in extractors "
                f"({STAND_IN_TAG}), not comparable with any published FID/KID.**"
            )
    return (
        summary,
        accuracy_display(report.accuracy),
        plots.accuracy_figure(report.accuracy),
        correlation_display(report.correlations),
        plots.scatter_figure(
            report.models,
            [*metrics, *model_level],
            f"[{STAND_IN_TAG}]" if stand_in else "",
        ),
        boards_display(report.leaderboards),
        plots.slices_figure(report.slices, kind=slice_kind or "category"),
        extras_markdown(report),
    )


PROTOCOL_HELP = "\n".join(f"- `{k}` {v}" for k, v in PROTOCOLS.items())


def render(store) -> None:
    service = AgreementService(store)
    options = service.options()
    gr.Markdown(
        "How often does each automatic metric prefer the image the raters chose? "
        "Read it against the **human ceiling**: how often one rater agrees with the majority "
        f"of the other raters on the same pair.\n\n{PROTOCOL_HELP}"
    )
    category, prompt_set, rater_kind, since, until, refresh = filter_row(options)
    summary = gr.Markdown()
    accuracy = gr.Dataframe(interactive=False, label="Pairwise accuracy", wrap=True)
    accuracy_plot = gr.Plot(label="Accuracy by metric and protocol")
    with gr.Row():
        correlations = gr.Dataframe(
            interactive=False,
            label="Model level: human ratings vs metric means and model-level metrics",
            wrap=True,
        )
        boards = gr.Dataframe(
            interactive=False, label="Leaderboards: same battles, decided by each", wrap=True
        )
    scatter = gr.Plot(label="Human rating vs metric per model")
    with gr.Row():
        slice_protocol = gr.Dropdown(
            list(PROTOCOLS), value="ties_half", label="Protocol for slices"
        )
        slice_kind = gr.Dropdown(list(SLICE_KINDS), value="category", label="Slice by")
    slices_plot = gr.Plot(label="Accuracy by slice")
    extras = gr.Markdown()
    inputs = [category, prompt_set, rater_kind, since, until, slice_protocol, slice_kind]
    outputs = [
        summary,
        accuracy,
        accuracy_plot,
        correlations,
        scatter,
        boards,
        slices_plot,
        extras,
    ]

    def update(*values):
        return agreement_outputs(service, *values)

    gr.on(triggers=None, fn=update, inputs=inputs, outputs=outputs, api_visibility="private")
    refresh.click(update, inputs=inputs, outputs=outputs, api_visibility="private")
    slice_kind.change(update, inputs=inputs, outputs=outputs, api_visibility="private")
    slice_protocol.change(update, inputs=inputs, outputs=outputs, api_visibility="private")
