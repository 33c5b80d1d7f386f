"""Run LMArena's ``arena-rank`` (in its own venv, ``make reference-env``) on the same battles.

The reference pins JAX and numpy versions of its own, so it never shares our venv:
the battles go to ``tests/reference/arena_rank_run.py`` through an .npz file.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "reference" / "arena_rank_run.py"
_CODES = np.array(["model_a", "model_b", "tie", "both_bad"])


def reference_python() -> Path:
    python = (
        Path(os.environ.get("ARENA_REFERENCE_VENV", ROOT / ".venv-reference")) / "bin" / "python"
    )
    if not python.exists():
        raise RuntimeError(
            f"{python} is missing: the arena-rank comparisons need the reference venv. "
            "Build it with `make reference-env` (make test does)."
        )
    return python


def run_arena_rank(
    left: np.ndarray,
    right: np.ndarray,
    outcome: np.ndarray,
    n_models: int,
    features: np.ndarray | None = None,
    reweighted: bool = False,
    min_pair_count: int = 50,
    reg: float = 1.0,
    ci: str = "sandwich",
    level: float = 0.95,
    repeat: int = 1,
) -> dict[str, np.ndarray]:
    """arena-rank's ratings, interval and coefficients, indexed by our model index.

    ``outcome`` uses our codes (0 left, 1 right, 2 tie, 3 both bad). ``repeat`` runs the
    fit that many times (the first includes JAX's compilation); ``seconds`` has each run.
    """
    feats = np.zeros((len(left), 0)) if features is None else np.asarray(features, float)
    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp, "in.npz"), Path(tmp, "out.npz")
        np.savez(
            source,
            left=np.asarray(left, np.int64),
            right=np.asarray(right, np.int64),
            outcome=_CODES[np.asarray(outcome, np.int64)],
            features=feats,
            n_models=n_models,
            reweighted=int(reweighted),
            min_pair_count=min_pair_count,
            reg=reg,
            ci=ci,
            level=level,
            repeat=repeat,
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env["JAX_PLATFORMS"] = "cpu"
        subprocess.run(
            [str(reference_python()), str(SCRIPT), str(source), str(target)],
            check=True,
            env=env,
            capture_output=True,
            timeout=600,
        )
        with np.load(target) as out:
            result = {key: out[key] for key in out.files}
    order = np.argsort(result["models"])
    for key in ("ratings", "lower", "upper", "variances"):
        result[key] = result[key][order]
    return result
