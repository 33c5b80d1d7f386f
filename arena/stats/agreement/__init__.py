"""Human vs metric agreement: pairwise accuracy, the human ceiling, rank correlations.

Pure functions over the frames of :mod:`arena.storage.store` (``votes_frame``,
``scores_frame``, ``images_frame``, ``prompts_frame``) and over numpy arrays;
no database, no UI. Random numbers come from a seeded ``numpy.random.Generator``
passed in.

**Pairwise accuracy.** For a vote between images L and R and a metric with
scores s(L), s(R), let Δ = s(L) - s(R) (higher is better; scores stored with
``higher_is_better`` False are negated: the direction travels with the data).
Three protocols are reported side by side:

``decisive``  (a) over decisive human votes (left or right), the metric is right
              when it scores the chosen image strictly higher; a metric tie
              (Δ = 0) counts as wrong. The ImageReward paper's protocol.
``ties_half`` (b) as (a), but a metric tie counts half: the expected score of
              breaking the tie by a coin. The Pick-a-Pic paper's protocol; a
              constant metric sits at exactly 50%.
``with_ties`` (c) over all votes; tie and both-bad are *human ties*. The metric
              predicts a tie when |Δ| ≤ t, else the side with the higher score,
              and is right when the prediction equals the human outcome. The
              tie threshold t is *cross-fitted*: prompts are split at random
              (seeded) into ``tie_folds`` folds; for each fold, t is the value
              maximising accuracy on the votes of the other folds (the smallest
              such |Δ|, searched exactly over every observed |Δ|), and is applied
              to the votes of this fold. Every vote is therefore scored with a
              threshold fitted without it (no optimism from fitting t on the
              data it is judged on, unlike tie calibration on the test set).

**Intervals.** Each accuracy comes with a 95% Wilson score interval (votes
treated as independent) and a bootstrap interval over *prompts* — the default
shown, since votes on one prompt share its difficulty. The bootstrap draws the
prompts with replacement (1,000 rounds) and takes along all their votes and
images; every statistic is a ratio of per-prompt sums, so one
``(rounds × prompts)`` weight matrix times one ``(prompts × statistics)`` sum
matrix gives every statistic of every round at once (:func:`cluster_bootstrap`).
Thresholds of (c) are held fixed across rounds.

**Human ceiling.** On image pairs voted (decisively) by two or more raters:
for each vote, does it agree with the majority of the *other* raters' votes on
the same pair (a tied majority counts half)? One vote per rater and pair (the
latest) is kept. Metrics are read against this, not against 100%.

**Model level.** Human Bradley-Terry ratings (ties split, :mod:`arena.stats.bradley_terry`)
against each metric's per-model mean score (over all scored images of the
model): Spearman ρ and Kendall τ-b. Each metric also gets its own leaderboard:
the same battles decided by the metric (higher score wins, equal scores tie),
fitted with the same BT code. Intervals come from the same prompt bootstrap,
which resamples votes and images together.

**Model-level metrics.** Numbers that exist only per model (KID, FID, CMMD,
FD-DINO, diversity, AS against a reference set: ``Store.model_metrics_frame()``,
passed as ``model_metrics``) join the same table: Spearman ρ and Kendall τ-b
between the human ratings and the metric, oriented by the ``higher_is_better``
stored with it (a lower FID for a higher human rating counts
as agreement, ρ > 0). The metric is fixed per model, so its intervals bootstrap
only the human side (the same prompt-bootstrap rounds of the human BT fit);
``spearman_bt`` does not apply. Rows carry ``level`` = ``model``; per-image means
carry ``image mean``.

**Slices, position bias, reliability.** Accuracy (protocol ``ties_half`` by
default) by prompt category, by number of prompt tags (comma-separated, binned)
and by model pair; the left-win rate among decisive votes with an exact
binomial test against 1/2; Krippendorff's α (nominal; outcomes oriented to the
canonical image order of the pair) on pairs with several votes.

Modules: :mod:`~arena.stats.agreement.intervals` (Wilson, cluster bootstrap),
:mod:`~arena.stats.agreement.protocols` (the three protocols, the ceiling),
:mod:`~arena.stats.agreement.correlations` (ρ, τ, leaderboards, model-level metrics),
:mod:`~arena.stats.agreement.reliability` (α, position bias),
:mod:`~arena.stats.agreement.inputs` (frames to arrays) and
:mod:`~arena.stats.agreement.report` (:func:`agreement_report`).
"""

from arena.stats.agreement.correlations import (
    CORRELATION_COLUMNS,
    LEADERBOARD_COLUMNS,
    ModelLevelValues,
    kendall_rows,
    model_level_values,
    spearman_rows,
)
from arena.stats.agreement.inputs import (
    TAG_BINS,
    count_tags,
    metric_matrix,
    tag_bin_labels,
)
from arena.stats.agreement.intervals import cluster_bootstrap, cluster_weights, wilson_interval
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
    "LEADERBOARD_COLUMNS",
    "POSITION_COLUMNS",
    "PROTOCOLS",
    "RELIABILITY_COLUMNS",
    "SLICE_COLUMNS",
    "TAG_BINS",
    "AgreementReport",
    "ModelLevelValues",
    "agreement_report",
    "ceiling_credit",
    "cluster_bootstrap",
    "cluster_weights",
    "count_tags",
    "cross_fitted_thresholds",
    "fit_tie_threshold",
    "kendall_rows",
    "krippendorff_alpha_nominal",
    "metric_matrix",
    "model_level_values",
    "position_bias",
    "protocol_credit",
    "spearman_rows",
    "tag_bin_labels",
    "wilson_interval",
]
