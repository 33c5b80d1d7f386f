"""The reference policy and criterion of benchmarks/sample_efficiency.py, by a second route.

Chatbot Arena's sampling rule (their Eq. 9) and win-matrix precision are recomputed
here from the list of each pair's outcomes with ``numpy.var``, instead of from the
win/tie count matrices the benchmark works on.
"""

import numpy as np
import pytest

from tests.benchmark_script import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("sample_efficiency")


# 3 models. Per unordered pair (a < b): outcomes of a against b (1 win, 0.5 tie, 0 loss).
OUTCOMES = {(0, 1): [1, 1, 1, 0, 0.5, 0.5], (0, 2): [1, 0, 0], (1, 2): [0] * 5 + [0.5]}


def count_matrices(outcomes):
    wins, ties = np.zeros((3, 3)), np.zeros((3, 3))
    for (a, b), values in outcomes.items():
        values = np.asarray(values)
        wins[a, b], wins[b, a] = (values == 1).sum(), (values == 0).sum()
        ties[a, b] = ties[b, a] = (values == 0.5).sum()
    return wins, ties


def pseudo_variance(values):
    """Variance of the outcomes with one pseudo-win and one pseudo-loss added."""
    return np.var(np.concatenate([values, [1.0, 0.0]]))


def test_chatbot_arena_rule_matches_eq9_from_outcome_lists(bench):
    gain = np.array(
        [
            np.sqrt(pseudo_variance(v)) * (1 / np.sqrt(len(v)) - 1 / np.sqrt(len(v) + 1))
            for v in OUTCOMES.values()
        ]
    )
    got = bench.chatbot_arena_probabilities(*count_matrices(OUTCOMES))
    np.testing.assert_allclose(got, gain / gain.sum(), rtol=1e-12)


def test_chatbot_arena_rule_serves_unseen_pairs_first(bench):
    outcomes = dict(OUTCOMES)
    outcomes[(0, 2)] = []
    got = bench.chatbot_arena_probabilities(*count_matrices(outcomes))
    np.testing.assert_array_equal(got, [0.0, 1.0, 0.0])


def test_win_matrix_width_is_mean_interval_width(bench):
    widths = [
        2 * 1.959963984540054 * np.sqrt(pseudo_variance(v) / len(v)) for v in OUTCOMES.values()
    ]
    got = bench.win_matrix_width(*count_matrices(OUTCOMES))
    assert got == pytest.approx(np.mean(widths), rel=1e-9)
    outcomes = dict(OUTCOMES)
    outcomes[(1, 2)] = []
    assert np.isinf(bench.win_matrix_width(*count_matrices(outcomes)))
