"""Slices over few prompts are flagged: their prompt-bootstrap interval is not reliable."""

from __future__ import annotations

import numpy as np

from arena.reports import plots
from arena.stats import agreement as ag
from arena.stats.agreement.report import MIN_SLICE_PROMPTS
from arena.ui.agreement_tab import extras_markdown
from tests.agreement_data import synthetic_arena


def test_a_category_with_six_prompts_is_flagged_and_shown():
    # Prompt k gets categories[k % 10]: "small" has 6 of the 60 prompts, "big" 54.
    data = synthetic_arena(
        np.random.default_rng(2),
        n_models=4,
        n_prompts=60,
        n_votes=3000,
        rater_sd=0.5,
        metric_noise={"m": 0.5},
        categories=("big",) * 9 + ("small",),
    )
    report = ag.agreement_report(data.votes, data.scores, np.random.default_rng(0), rounds=100)
    part = report.slices[report.slices.slice_kind == "category"].set_index("slice")
    decisive = data.votes[data.votes.outcome.isin(["left", "right"])]  # protocol ties_half
    expected = decisive.groupby("category").prompt_id.nunique()
    assert part.prompts.to_dict() == expected.to_dict() == {"big": 54, "small": 6}
    assert part.few_prompts.to_dict() == {"big": False, "small": True}
    assert (report.slices.few_prompts == (report.slices.prompts < MIN_SLICE_PROMPTS)).all()
    # Shown where the slices are shown: the figure's labels and the tab's notes.
    fig = plots.slices_figure(report.slices, kind="category")
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["big", "small (6 prompts*)"]
    assert "small (6 prompts)" in extras_markdown(report)
    assert "big (" not in extras_markdown(report)
