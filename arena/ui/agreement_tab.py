"""The Agreement tab: which automatic metric agrees with the raters, how often, and where not.

Numbers come from :class:`arena.reports.agreement.AgreementService` (the leaderboard's
filters and frames, cached until votes, rater exclusions or scores change); this module
only formats them. Figures are matplotlib ``Figure`` objects from
:mod:`arena.reports.plots`. No torch anywhere on this path.
"""

from __future__ import annotations

import math

import gradio as gr
import pandas as pd

from arena.reports import plots
from arena.reports.agreement import AgreementService
from arena.reports.analyses import AnalysesService
from arena.reports.stand_in import stand_in_label, stand_in_warning
from arena.stats.agreement import CEILING, PROTOCOLS, AgreementReport
from arena.stats.agreement.correlations import MIN_MODELS_FOR_INTERVAL
from arena.stats.agreement.report import MIN_SLICE_PROMPTS, SLICE_KINDS
from arena.ui import analyses_section, group_section, judge_panel
from arena.ui.cells import number, percent
from arena.ui.filter_row import FIELDS, filter_row, filters_of, named

TITLE = "Agreement"


def enabled(settings) -> bool:
    """On the raters' app only with the reveal on: its filters and per-pair slices would
    isolate single votes (arena.reports.public_view); the Admin app always has it."""
    return bool(settings.reveal_models)


# -- formatting --------------------------------------------------------------------------------
def accuracy_display(accuracy: pd.DataFrame) -> pd.DataFrame:
    """Metric × protocol as readable strings, the human ceiling as the last row; "Chance"
    is what a metric blind to the images expects under that protocol (0.5 for (a) and
    (b); for (c) the better of always "tie" and always a side)."""
    columns = [
        "Metric",
        "Protocol",
        "Accuracy",
        "Chance",
        "95% CI (prompts)",
        "Wilson 95% CI",
        "Votes",
    ]
    if accuracy.empty:
        return pd.DataFrame(columns=[*columns, "Tie threshold"])
    rows = []
    for r in accuracy.itertuples(index=False):
        rows.append(
            {
                "Metric": r.metric,
                "Protocol": r.description if r.metric != CEILING else "leave-one-out majority",
                "Accuracy": percent(r.accuracy),
                "Chance": percent(r.chance),
                "95% CI (prompts)": f"{percent(r.ci_low)} – {percent(r.ci_high)}",
                "Wilson 95% CI": f"{percent(r.wilson_low)} – {percent(r.wilson_high)}",
                "Votes": int(r.n),
                "Tie threshold": r.tie_threshold,
            }
        )
    return pd.DataFrame(rows)


def _corr_cell(value, low, high, p=None, few=False) -> str:
    """ρ or τ with its interval and permutation p; no interval with too few models."""
    text = number(value, 2)
    if not few:
        text += f" [{number(low, 2)}, {number(high, 2)}]"
    if p is not None and not (isinstance(p, float) and math.isnan(p)):
        text += f" (p = {p:.2g})"
    return text


def _corr_cells(corr: pd.DataFrame, name: str, with_p: bool = True) -> list[str]:
    """The column ``name`` (with ``_low``, ``_high`` and, if given, ``_p``) as cells."""
    p = corr[f"{name}_p"] if with_p else [None] * len(corr)
    columns = (corr[name], corr[f"{name}_low"], corr[f"{name}_high"], p, corr.few_models)
    return [_corr_cell(*row) for row in zip(*columns, strict=True)]


def correlation_display(corr: pd.DataFrame) -> pd.DataFrame:
    """One row per metric: per-image means first, then model-level numbers (KID, FID ...),
    whose ρ and τ are oriented so that > 0 means the metric agrees with the raters. With
    few models (``few_models``) only the permutation p-value, no bootstrap interval."""
    columns = ["Metric", "Level", "Models", "Spearman ρ", "Kendall τ", "ρ with metric's own BT"]
    if corr.empty:
        return pd.DataFrame(columns=columns)
    return pd.DataFrame(
        {
            "Metric": corr["metric"],
            "Level": corr["level"],
            "Models": corr["n_models"],
            "Spearman ρ": _corr_cells(corr, "spearman"),
            "Kendall τ": _corr_cells(corr, "kendall"),
            "ρ with metric's own BT": _corr_cells(corr, "spearman_bt", with_p=False),
        }
    )


def boards_display(boards: pd.DataFrame) -> pd.DataFrame:
    """Model × decider ratings (human first), sorted by the human rating; a model the
    decider never (or always) prefers has no rating there (``identified`` false)."""
    if boards.empty:
        return pd.DataFrame(columns=["Model"])
    wide = boards.pivot(index="model", columns="decider", values="rating")
    deciders = ["human", *[d for d in wide.columns if d != "human"]]
    wide = wide[deciders].sort_values("human", ascending=False)
    out = pd.DataFrame({"Model": wide.index})
    for d in deciders:
        ranks = boards[boards.decider == d].set_index("model")["rank"]
        out[d] = [
            "no rating (never won or never lost)"
            if pd.isna(ranks[m])
            else f"{wide.at[m, d]:.0f} (#{int(ranks[m])})"
            for m in wide.index
        ]
    return out


def extras_markdown(report: AgreementReport) -> str:
    lines = []
    few = report.slices[report.slices["few_prompts"].astype(bool)] if len(report.slices) else None
    if few is not None and len(few):
        names = sorted({f"{r.slice} ({r.prompts} prompts)" for r in few.itertuples()})
        lines.append(
            f"**Few prompts:** {len(names)} slice(s) rest on fewer than {MIN_SLICE_PROMPTS} "
            f"prompts, too few clusters for the prompt bootstrap; read their intervals (marked "
            f"* in the plot) with care: {', '.join(names)}."
        )
    if len(report.position_bias):
        p = report.position_bias.iloc[0]
        lines.append(
            f"**Position bias:** the left image won {percent(p.left_win_rate)} of "
            f"{int(p.decisive_votes)} decisive votes (95% CI {percent(p.ci_low)} – "
            f"{percent(p.ci_high)}; binomial test against 50%: p = {p.p_value:.3g})."
        )
    if len(report.reliability):
        a = report.reliability.iloc[0]
        lines.append(
            f"**Inter-rater reliability:** Krippendorff's α (nominal) = {number(a.alpha, 3)} "
            f"[{number(a.alpha_low, 3)}, {number(a.alpha_high, 3)}] over {int(a.units)} image "
            f"pairs with several raters ({int(a.votes)} votes, {int(a.raters)} raters)."
        )
    return "\n\n".join(lines)


#: The tab's own values, after the filter row's.
SLICE_FIELDS = ("slice_protocol", "slice_kind")


def agreement_outputs(service: AgreementService, *values, **given):
    """Everything the tab shows (the judge section last), for the filter row's values
    and then the slice protocol and kind, positionally or by name."""
    v = named(values, given, FIELDS + SLICE_FIELDS)
    slice_protocol, slice_kind = v["slice_protocol"], v["slice_kind"]
    empty = (
        accuracy_display(pd.DataFrame()),
        None,
        correlation_display(pd.DataFrame()),
        None,
        boards_display(pd.DataFrame()),
        None,
        "",
        "",  # the judge section: nothing to say before the filters are read
        *judge_panel.judge_outputs(None)[1:],
    )
    try:
        filters = filters_of(**{k: v[k] for k in FIELDS})
        result = service.get(filters, slice_protocol or "ties_half")
    except ValueError as exc:  # a filter's (ReportError) or a protocol's
        return (f"**Cannot compute agreement:** {exc}", *empty)
    report = result.report
    if result.votes_used == 0:
        judges = judge_panel.judge_outputs(report.judges)
        return (f"No votes yet for {filters.describe()}.", *empty[:-4], *judges)
    metrics = report.info["metrics"]
    model_level = report.info.get("model_metrics", [])
    features = report.info["model_metric_features"]
    summary = (
        f"**{result.votes_used}** votes ({filters.describe()}) on "
        f"**{report.info['prompts']}** prompts · {len(report.info['models'])} models · "
        f"metrics: {', '.join(metrics) or 'none yet (run `arena score`)'}. "
        f"Intervals: 95%, bootstrap over prompts ({report.info['rounds']} rounds) unless "
        f"marked Wilson. Computed in {result.seconds:.1f}s.\n\n"
        "Model level: p is the exact permutation p-value of ρ and τ across the models "
        "(two-sided; random pairings above 8 models). With fewer than "
        f"{MIN_MODELS_FOR_INTERVAL} models no interval is shown: the prompt bootstrap holds "
        "the models fixed and cannot say whether so few could agree by chance."
    )
    if model_level:
        part = report.info.get("model_metrics_slice", "")
        over = (
            f"over its images of {part.replace('=', ' ').replace('_', ' ')} "
            "(`arena distribution --by`)"
            if part
            else "over all its images, not filtered"
        )
        summary += (
            f"\n\nModel-level metrics: {', '.join(model_level)} (one number per model {over}; "
            "ρ and τ oriented so that > 0 = agrees with the raters, e.g. lower FID for a higher "
            "rating; intervals bootstrap the human ratings only)."
        )
        if stand_in_warning(features):
            summary += f" **{stand_in_warning(features)}**"
    return (
        summary,
        accuracy_display(report.accuracy),
        plots.accuracy_figure(report.accuracy),
        correlation_display(report.correlations),
        plots.scatter_figure(
            report.models,
            [*metrics, *model_level],
            stand_in_label(features),
        ),
        boards_display(report.leaderboards),
        plots.slices_figure(report.slices, kind=slice_kind or "category"),
        extras_markdown(report),
        *judge_panel.judge_outputs(report.judges),
    )


PROTOCOL_HELP = "\n".join(f"- `{k}` {v}" for k, v in PROTOCOLS.items())


def render(
    store, groups: bool = False, failures: bool = False, analyses: bool = False,
    held_out: bool = False,
):  # fmt: skip
    """The tab; returns its refresh (fn, inputs, outputs) for when it is opened. ``groups``
    (the Admin app) adds the rater-group comparison (:mod:`arena.ui.group_section`),
    ``failures`` (the Admin app) failure rates against the human rating
    (:mod:`arena.ui.failure_section`), ``analyses`` (the Admin app) the common set,
    tag, seed and metric × metric analyses (:mod:`arena.ui.analyses_section`), ``held_out``
    (the Admin app) the held-out sets filter."""
    service = AgreementService.of(store)
    options = service.options()
    gr.Markdown(
        "How often does each automatic metric prefer the image the raters chose? "
        "Read it against the **human ceiling**: how often one rater agrees with the majority "
        f"of the other raters on the same pair.\n\n{PROTOCOL_HELP}"
    )
    filters, refresh = filter_row(options, held_out=held_out)
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
    judges = judge_panel.render()
    inputs = [*filters, slice_protocol, slice_kind]
    outputs = [
        summary,
        accuracy,
        accuracy_plot,
        correlations,
        scatter,
        boards,
        slices_plot,
        extras,
        *judges,
    ]
    if groups:
        outputs += group_section.render()
    if failures:
        from arena.ui import failure_section

        outputs += failure_section.agreement_components()
    if analyses:
        outputs += analyses_section.render()
    extra = AnalysesService.of(store)

    def update(*values):
        shown = agreement_outputs(service, *values)
        row, protocol = values[: len(FIELDS)], values[len(FIELDS)]  # filters, slice protocol
        if groups:
            shown = (*shown, *group_section.group_outputs(service, *row))
        if failures:
            shown = (*shown, *failure_section.agreement_outputs(store, service, *row, protocol))
        if analyses:
            shown = (*shown, *analyses_section.analyses_outputs(extra, *row))
        return shown

    # Computed when the tab is opened (the returned refresh, arena.ui.app.refresh_on_open),
    # not on every page load: most visitors of the page never open this tab.
    gr.on(
        triggers=[refresh.click, slice_kind.change, slice_protocol.change],
        fn=update,
        inputs=inputs,
        outputs=outputs,
        api_visibility="private",
    )
    return update, inputs, outputs
