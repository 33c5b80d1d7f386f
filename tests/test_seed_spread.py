"""Seeds and spread (issue 22, item 5): the seed index of an image, per-model means per seed
index, and the mean ± standard deviation across seeds with the warning below 3 seeds;
by hand on small frames and on tests/analyses_data.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from arena.reports.analyses import AnalysesService
from arena.stats.seeds import MIN_SEEDS, PER_SEED_COLUMNS, SPREAD_COLUMNS, seed_index
from arena.stats.seeds import seed_means as per_seed_means
from arena.stats.seeds import seed_spread as spread_of
from tests import analyses_data as D


def test_the_seed_index_is_the_rank_of_the_seed_within_its_prompt():
    images = pd.DataFrame(
        {
            "prompt_id": [1, 1, 1, 1, 2, 2, 2, 3, 3],
            "seed": [30, 5, 7, 5, 123456, 99, np.nan, np.nan, np.nan],
        }
    )
    # prompt 1: seeds 5, 7, 30 -> 0, 1, 2 (both images of seed 5: index 0, whatever model)
    # prompt 2: 99 -> 0, 123456 -> 1, no seed last -> 2; prompt 3: only seedless -> 0
    assert seed_index(images).tolist() == [2, 0, 1, 0, 1, 0, 2, 0, 0]
    order = np.random.default_rng(1).permutation(len(images))
    shuffled = images.iloc[order].reset_index(drop=True)
    assert seed_index(shuffled).tolist() == [seed_index(images)[k] for k in order]
    relabelled = images.assign(prompt_id=images.prompt_id.map({1: 70, 2: 5, 3: 900}))
    assert seed_index(relabelled).tolist() == seed_index(images).tolist()
    with pytest.raises(ValueError, match=r"lacks columns \['seed'\]"):
        seed_index(images.drop(columns="seed"))


def test_per_seed_means_and_the_spread_by_hand():
    values = pd.DataFrame(
        {
            "model": ["m"] * 7 + ["n"] * 2,
            "metric": ["clip"] * 6 + ["tags"] + ["clip"] * 2,
            "seed_index": [0, 0, 1, 1, 2, 2, 0, 0, 0],
            "value": [1.0, 3.0, 2.0, 6.0, 5.0, np.nan, 0.5, 4.0, 8.0],
        }
    )
    per_seed = per_seed_means(values)
    assert list(per_seed.columns) == PER_SEED_COLUMNS
    m = per_seed[(per_seed.model == "m") & (per_seed.metric == "clip")]
    assert m["mean"].tolist() == [2.0, 4.0, 5.0]  # the NaN of seed 2 is left out
    assert m["images"].tolist() == [2, 2, 1]
    spread = spread_of(per_seed).set_index(["model", "metric"])
    assert list(spread.reset_index().columns) == SPREAD_COLUMNS
    row = spread.loc[("m", "clip")]
    assert row["mean"] == pytest.approx(11 / 3)
    assert row["std"] == pytest.approx(np.std([2.0, 4.0, 5.0], ddof=1))  # sqrt(7/3)
    assert row["std"] == pytest.approx(np.sqrt(7 / 3))
    assert (row["n_seeds"], row["min"], row["max"], row["images"]) == (3, 2.0, 5.0, 5)
    assert not row["few_seeds"]
    one = spread.loc[("n", "clip")]  # one seed: no spread, flagged
    assert one["n_seeds"] == 1 and np.isnan(one["std"]) and one["few_seeds"]
    assert one["mean"] == 6.0
    assert spread.loc[("m", "tags"), "few_seeds"]
    assert MIN_SEEDS == 3
    with pytest.raises(ValueError, match=r"lacks columns \['seed_index'\]"):
        per_seed_means(values.drop(columns="seed_index"))


def test_the_spread_on_the_workspace_is_over_the_common_set(store):
    D.build(store)
    analyses = AnalysesService(store.with_settings(bootstrap_rounds=10)).get().analyses
    per_seed = analyses.seed_means.set_index(["model", "metric", "seed_index"])
    # A's sharpness: seed 10 (index 0) at p0, p1, p2 -> (1 + 3 + 5) / 3; seed 20 at p0 -> 2
    assert per_seed.at[("A", "sharpness", 0), "mean"] == 3.0
    assert per_seed.at[("A", "sharpness", 1), "mean"] == 2.0
    assert per_seed.at[("A", "sharpness", 1), "images"] == 1
    spread = analyses.seed_spread.set_index(["model", "metric"])
    assert spread.at[("A", "sharpness"), "mean"] == 2.5
    assert spread.at[("A", "sharpness"), "std"] == pytest.approx(np.sqrt(0.5))
    assert spread["few_seeds"].all() and set(spread["n_seeds"]) == {2}  # two seeds: warned
    # every model's seed k is over the same prompts (the common set): B's seed 1 is p0 only
    assert per_seed.at[("B", "sharpness", 1), "mean"] == 1.0
    unpaired = AnalysesService(store.with_settings(paired_metrics=False, bootstrap_rounds=10))
    loose = unpaired.get().analyses.seed_means.set_index(["model", "metric", "seed_index"])
    # off: A's seed 20 has p0, p1, p2 (2, 4, 6); B's has p0 and p2 (1, 9): other prompts
    assert loose.at[("A", "sharpness", 1), "mean"] == 4.0
    assert loose.at[("B", "sharpness", 1), "mean"] == 5.0
