"""Runs LMArena's ``arena-rank`` on battles from an .npz file; writes its numbers to another.

Executed by the reference venv's Python (``make reference-env``), never imported by the
tests: arena-rank pins JAX and numpy versions of its own. Usage:
``python arena_rank_run.py IN.npz OUT.npz``. IN holds ``left``, ``right`` (int model
indices), ``outcome`` (strings model_a / model_b / tie / both_bad), ``features`` (N, k;
k = 0 for the plain model), ``n_models``, ``reweighted`` (0/1), ``min_pair_count``,
``reg``, ``ci`` ("sandwich" or "bootstrap"), ``level``.
"""

import sys
import time

import numpy as np
import pandas as pd
from arena_rank.models.bradley_terry import BradleyTerry
from arena_rank.models.contextual_bradley_terry import ContextualBradleyTerry
from arena_rank.utils.data_utils import ContextualPairDataset, PairDataset


def main(source: str, target: str) -> None:
    data = np.load(source, allow_pickle=False)
    n = int(data["n_models"])
    names = np.array([f"m{i:04d}" for i in range(n)])
    frame = pd.DataFrame(
        {
            "model_a": names[data["left"]],
            "model_b": names[data["right"]],
            "winner": data["outcome"].astype(str),
        }
    )
    features = data["features"]
    columns = [f"f{c}" for c in range(features.shape[1])]
    for c, name in enumerate(columns):
        frame[name] = features[:, c]
    reweighted = bool(int(data["reweighted"]))
    level = float(data["level"])
    repeat = int(data["repeat"]) if "repeat" in data.files else 1
    seconds = []
    for _ in range(repeat):  # the first run includes JAX's compilation
        start = time.perf_counter()
        result = _fit(data, frame, columns, reweighted, level)
        seconds.append(time.perf_counter() - start)
    order = [int(name[1:]) for name in result["competitors"]]
    out = {
        "models": np.asarray(order),
        "ratings": np.asarray(result["ratings"]),
        "lower": np.asarray(result["rating_lower"]),
        "upper": np.asarray(result["rating_upper"]),
        "variances": np.asarray(result["variances"]),
        "coeffs": np.asarray(result.get("coeffs", np.zeros(0))),
        "seconds": np.asarray(seconds),
    }
    np.savez(target, **out)


def _fit(data, frame, columns, reweighted, level):
    if columns:
        dataset = ContextualPairDataset.from_pandas(
            frame, columns, reweighted=reweighted, min_pair_count=int(data["min_pair_count"])
        )
        model = ContextualBradleyTerry(
            len(dataset.competitors), len(columns), reg=float(data["reg"])
        )
    else:
        dataset = PairDataset.from_pandas(
            frame, reweighted=reweighted, min_pair_count=int(data["min_pair_count"])
        )
        model = BradleyTerry(len(dataset.competitors))
    return model.compute_ratings_and_cis(
        dataset, significance_level=1.0 - level, ci_method=str(data["ci"])
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
