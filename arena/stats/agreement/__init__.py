"""Human vs metric agreement: pairwise accuracy, the human ceiling, rank correlations.

Pure functions over the frames of :mod:`arena.storage.store` (``votes_frame``,
``scores_frame``, ``images_frame``, ``prompts_frame``, ``model_metrics_frame``) and
over numpy arrays; no database, no UI; random numbers come from a seeded
``numpy.random.Generator`` passed in. Scores are oriented by the ``higher_is_better``
stored with them: the direction travels with the data. The definitions (the three
accuracy protocols, the cross-fitted tie threshold, the prompt bootstrap, the ceiling,
the model-level correlations) are on the docs' statistics page.

Modules: :mod:`~arena.stats.agreement.intervals` (Wilson, cluster bootstrap),
:mod:`~arena.stats.agreement.protocols` (the three protocols, the ceiling),
:mod:`~arena.stats.agreement.correlations` (ρ, τ, leaderboards, model-level metrics),
:mod:`~arena.stats.agreement.reliability` (α, position bias),
:mod:`~arena.stats.agreement.inputs` (frames to arrays),
:mod:`~arena.stats.agreement.report` (:func:`agreement_report`),
:mod:`~arena.stats.agreement.groups` (:func:`group_comparison`: rater groups compared),
:mod:`~arena.stats.agreement.judges` and :mod:`~arena.stats.agreement.judge_report`
(machine judges as raters and deciders: :func:`judge_report`). The names below are
the package's public API.
"""

from arena.stats.agreement.correlations import (
    CORRELATION_COLUMNS,
    LEADERBOARD_COLUMNS,
    ModelLevelValues,
    kendall_rows,
    model_level_values,
    spearman_rows,
)
from arena.stats.agreement.groups import NO_GROUP, GroupComparison, group_comparison
from arena.stats.agreement.inputs import (
    TAG_BINS,
    count_tags,
    metric_matrix,
    tag_bin_labels,
)
from arena.stats.agreement.intervals import cluster_bootstrap, cluster_weights, wilson_interval
from arena.stats.agreement.judge_report import (
    JUDGE_AGREEMENT_COLUMNS,
    JUDGE_CONSISTENCY_COLUMNS,
    JUDGE_CORRELATION_COLUMNS,
    JUDGE_LEADERBOARD_COLUMNS,
    JudgeReport,
    judge_report,
)
from arena.stats.agreement.protocols import (
    CEILING,
    CEILING_PROTOCOL,
    PROTOCOLS,
    ceiling_credit,
    cross_fitted_thresholds,
    fit_tie_threshold,
    protocol_credit,
)
from arena.stats.agreement.reliability import (
    POSITION_COLUMNS,
    krippendorff_alpha_nominal,
    krippendorff_alpha_pairs,
    pair_coincidences,
    position_bias,
)
from arena.stats.agreement.report import (
    ACCURACY_COLUMNS,
    RELIABILITY_COLUMNS,
    SLICE_COLUMNS,
    AgreementReport,
    agreement_report,
)

__all__ = [
    "ACCURACY_COLUMNS",
    "CEILING",
    "CEILING_PROTOCOL",
    "CORRELATION_COLUMNS",
    "JUDGE_AGREEMENT_COLUMNS",
    "JUDGE_CONSISTENCY_COLUMNS",
    "JUDGE_CORRELATION_COLUMNS",
    "JUDGE_LEADERBOARD_COLUMNS",
    "LEADERBOARD_COLUMNS",
    "NO_GROUP",
    "POSITION_COLUMNS",
    "PROTOCOLS",
    "RELIABILITY_COLUMNS",
    "SLICE_COLUMNS",
    "TAG_BINS",
    "AgreementReport",
    "GroupComparison",
    "JudgeReport",
    "ModelLevelValues",
    "agreement_report",
    "ceiling_credit",
    "cluster_bootstrap",
    "cluster_weights",
    "count_tags",
    "cross_fitted_thresholds",
    "fit_tie_threshold",
    "group_comparison",
    "judge_report",
    "kendall_rows",
    "krippendorff_alpha_nominal",
    "krippendorff_alpha_pairs",
    "metric_matrix",
    "model_level_values",
    "pair_coincidences",
    "position_bias",
    "protocol_credit",
    "spearman_rows",
    "tag_bin_labels",
    "wilson_interval",
]
