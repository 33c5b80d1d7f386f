"""Tag accuracy against the number of prompt tags and a tag's position (issue 22, item 3):
the long table from the tags metric's stored details, the binned accuracies counted by hand
on tests/analyses_data.py, the prompt bootstrap against a plain loop over the same draws,
and invariance to ids, row order and model names."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from arena.reports.analyses import AnalysesService
from arena.reports.frames import load_report_frames
from arena.reports.leaderboard import metric_columns
from arena.stats import tag_accuracy as T
from arena.stats.agreement.intervals import cluster_weights, nan_percentile_interval
from tests import analyses_data as D
from tests.agreement_data import relabel_prompts


def _hits_by_hand(keys) -> pd.DataFrame:
    """The long table written out from the fixture's dictionaries."""
    rows = []
    for model, prompt, seed in keys:
        for (tag, position), hit in zip(
            D.TAG_POSITIONS[prompt], D.HITS[(model, prompt, seed)], strict=True
        ):
            rows.append((model, prompt, seed, tag, position, D.N_PROMPT_TAGS[prompt], bool(hit)))
    return pd.DataFrame(rows, columns=["model", "prompt", "seed", "tag", "position", "n", "hit"])


@pytest.fixture
def analysed(store):
    ids = D.build(store)
    store = store.with_settings(bootstrap_rounds=200)
    return store, ids, AnalysesService(store).get().analyses


def test_the_long_table_is_the_stored_details(analysed):
    _, ids, analyses = analysed
    hits = analyses.tag_hits
    assert list(hits.columns) == T.HIT_COLUMNS
    by_id = {v: k for k, v in ids.items()}
    got = hits.assign(
        key=[by_id[i] for i in hits.image_id],
    )
    common = [(m, p, s) for m in D.MODELS for p, s in sorted(D.COMMON)]
    expected = _hits_by_hand(common)
    assert len(got) == len(expected) == 3 * (3 + 3 + 4 + 1)
    pairs = sorted(
        (k[0], k[1], k[2], t, int(pos), int(n), bool(h))
        for k, t, pos, n, h in zip(got.key, got.tag, got.position, got.n_tags, got.hit, strict=True)
    )
    assert pairs == sorted(expected.itertuples(index=False, name=None))
    assert set(got.n_countable[got.key.map(lambda k: k[1]) == "p1"]) == {4}  # no masterpiece
    assert set(got.probability) == {0.1, 0.9}
    assert (got.seed.astype(int) == got.key.map(lambda k: k[2])).all()


def test_accuracy_by_number_of_tags_by_hand(analysed):
    store, _, analyses = analysed
    table = analyses.tag_by_count.set_index(["model", "bin"])
    # A on the common set: p2 (1 tag) 1/1; p0 (3 tags) 2/3 and 3/3; p1 (5 tags) 2/4
    assert table.at[("A", "1"), "accuracy"] == 1.0
    assert table.at[("A", "2-3"), "accuracy"] == pytest.approx((2 / 3 + 1) / 2)
    assert table.at[("A", "4-5"), "accuracy"] == 0.5
    assert table.at[("A", "all"), "accuracy"] == pytest.approx((2 / 3 + 1 + 0.5 + 1) / 4)
    assert tuple(table.loc[("A", "2-3"), ["images", "tags", "prompts"]]) == (2, 6, 1)
    assert tuple(table.loc[("B", "all"), ["images", "tags", "prompts"]]) == (4, 11, 3)
    # the "all" bin is the leaderboard's tags column over the same (common) images
    means = metric_columns(load_report_frames(store))
    for model in D.MODELS:
        assert table.at[(model, "all"), "accuracy"] == pytest.approx(means.at[model, "tags"])
    # one prompt in a bin: every bootstrap draw is that prompt, the interval is the point
    assert table.at[("A", "4-5"), "ci_low"] == table.at[("A", "4-5"), "ci_high"] == 0.5
    assert ("A", "6-7") not in table.index  # no prompt with 6 or 7 tags


def test_accuracy_by_position_by_hand(analysed):
    _, _, analyses = analysed
    table = analyses.tag_by_position.set_index(["model", "bin"])
    keys = [(m, p, s) for m in D.MODELS for p, s in sorted(D.COMMON)]
    hand = _hits_by_hand(keys)
    for (model, position), part in hand.groupby(["model", "position"]):
        label = "4-5" if position >= 4 else str(position)
        assert table.at[(model, label), "accuracy"] == pytest.approx(part.hit.mean())
        assert table.at[(model, label), "tags"] == len(part)
    # A at position 2: long_hair missed at (p0, 10), found at (p0, 20); red_hair missed
    assert table.at[("A", "2"), "accuracy"] == pytest.approx(1 / 3)
    assert table.at[("C", "all"), "accuracy"] == pytest.approx(7 / 11)  # a hit rate over tags


def test_the_interval_is_a_bootstrap_over_prompts():
    """The binned accuracy's interval is the plain loop: draw prompts with replacement (the
    same draws), recompute Σ numerator / units per draw, take the 2.5th and 97.5th."""
    rng = np.random.default_rng(7)
    n = 60
    model = rng.choice(["x", "y"], n)
    prompt = rng.integers(0, 9, n) * 10 + 3  # prompt ids: any labels
    value = rng.random(n)
    bins = rng.integers(-1, 3, n)  # -1: in no bin, counted in "all" only
    labels = ["b0", "b1", "b2"]
    got = T.binned_accuracy(
        model, prompt, np.arange(n), bins, value, np.ones(n), labels, np.random.default_rng(5), 400
    ).set_index(["model", "bin"])
    prompts = np.unique(prompt)
    weights = cluster_weights(np.random.default_rng(5), len(prompts), 400)
    at = np.searchsorted(prompts, prompt)
    for m in ("x", "y"):
        for b, label in [(0, "b0"), (1, "b1"), (2, "b2"), (None, "all")]:
            rows = (model == m) & ((bins == b) if b is not None else True)
            w = weights[:, at[rows]]  # each unit weighs as often as its prompt was drawn
            with np.errstate(invalid="ignore"):
                draws = (w * value[rows]).sum(axis=1) / w.sum(axis=1)
            low, high = nan_percentile_interval(draws[:, None], 0.95)
            assert got.at[(m, label), "accuracy"] == pytest.approx(value[rows].mean())
            assert got.at[(m, label), "ci_low"] == pytest.approx(low[0], rel=1e-5)
            assert got.at[(m, label), "ci_high"] == pytest.approx(high[0], rel=1e-5)
            assert got.at[(m, label), "prompts"] == len(set(prompt[rows]))


def test_relabelled_prompts_move_no_interval():
    """With the prompts frame, the bootstrap numbers the prompts by their content: the same
    prompts under other ids (reversed, spread out) and the rows shuffled give exactly the
    same table; a unit without a prompt is one cluster wherever its rows are."""
    rng = np.random.default_rng(7)
    n = 300
    prompts = pd.DataFrame(
        {
            "prompt_id": np.arange(1, 31),
            "prompt_set": "s",
            "external_id": [f"e{k}" for k in range(30)],
            "text": [f"text {k * 7 % 30}" for k in range(30)],
            "tags": "",
            "category": "",
        }
    )
    hits = pd.DataFrame(
        {
            "model": rng.choice(["x", "y"], n),
            "prompt_id": pd.array(rng.integers(1, 31, n), dtype="Int64"),
            "image_id": np.arange(n),
            "position": rng.integers(0, 12, n),
            "hit": rng.random(n) < 0.6,
        }
    )
    hits.loc[rng.random(n) < 0.05, "prompt_id"] = pd.NA  # images without a prompt

    def table(hits_, prompts_):
        return T.accuracy_by_position(hits_, np.random.default_rng(5), 300, prompts=prompts_)

    base = table(hits, prompts)
    moved_prompts, moved_hits = relabel_prompts(prompts, hits)
    pd.testing.assert_frame_equal(table(moved_hits, moved_prompts), base, check_exact=True)
    assert (base.ci_low < base.ci_high).all()


def test_no_details_no_rows_and_bad_input_is_named():
    empty = pd.DataFrame(columns=T.HIT_COLUMNS)
    rng = np.random.default_rng(0)
    assert T.accuracy_by_count(empty, rng).empty and T.accuracy_by_position(empty, rng).empty
    images = pd.DataFrame({"image_id": [1], "model": ["A"], "prompt_id": [1], "seed": [0]})
    skipped = pd.DataFrame({"image_id": [1], "details": [{"tags": [], "skipped": "no tag"}]})
    assert T.tag_hits_table(skipped, images).empty
    with pytest.raises(ValueError, match=r"lacks columns \['details'\].*scores.details"):
        T.tag_hits_table(pd.DataFrame({"image_id": [1]}), images)
    with pytest.raises(ValueError, match=r"images frame lacks columns \['model'\]"):
        T.tag_hits_table(skipped, images.drop(columns="model"))


def _canonical(analyses, names=None) -> dict[str, pd.DataFrame]:
    back = {v: k for k, v in (names or {}).items()}
    out = {}
    for key in ("tag_by_count", "tag_by_position"):
        frame = getattr(analyses, key).copy()
        frame["model"] = frame["model"].map(lambda m: back.get(m, m))
        out[key] = frame.sort_values(["model", "bin"]).reset_index(drop=True)
    return out


def test_numbers_do_not_move_with_ids_insert_order_or_model_names(tmp_path):
    from arena.config import load_settings
    from arena.storage.store import Store

    def analysed_store(name, **kwargs):
        store = Store(load_settings(env={}, workspace=str(tmp_path / name), bootstrap_rounds=150))
        D.build(store, **kwargs)
        return AnalysesService(store).get().analyses

    base = _canonical(analysed_store("base"))
    order = list(np.random.default_rng(2).permutation(len(D.cells())))
    names = {"A": "zz-anime", "B": "aa-anime", "C": "mm-anime"}
    other = analysed_store(
        "other", order=order, id_offset=5000, names=list(names.values()), prompts_reversed=True
    )
    got = _canonical(other, names)
    for key in base:  # the prompts' other ids too: the bootstrap orders them by text
        pd.testing.assert_frame_equal(got[key], base[key], check_exact=True)
