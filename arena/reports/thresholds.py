"""Thresholds of the candidate-vs-baseline report: a TOML (or JSON) file of checks.

A check names a quantity and a bound::

    [win_rate]                 # the candidate's head-to-head win rate (ties count half)
    min = 0.5
    on = "interval"            # the pessimistic end of its interval must pass (default:
                               # "estimate", the point value)
    [rating]                   # leaderboard rating difference, candidate - baseline (Elo)
    min = -10
    [metrics.clip]             # a per-image metric on the paired cells: how much worse
    max_regression = 0.005     # than the baseline the candidate may be, in its own units
    [model_metrics.fid]        # a model-level number (optionally `reference = "coco"`)
    max_regression = 1.0
    [failures.any]             # the blind-sample failure rate (any failure, or one mode by
    max_increase = 0.02        # name): how much higher the candidate's may be

"Worse" follows the direction stored with the numbers (``higher_is_better``). A check
whose number is missing (no votes, no score, no flags) gets the verdict ``no data`` and
fails the gate: a regression gate that passes on missing evidence gates nothing.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from arena.reports.frames import ReportError
from arena.stats.failures import ANY_FAILURE, BLIND

KINDS = ("win_rate", "rating", "metrics", "model_metrics", "failures")
_BOUNDS = {
    "win_rate": ("min",),
    "rating": ("min",),
    "metrics": ("max_regression",),
    "model_metrics": ("max_regression",),
    "failures": ("max_increase",),
}


@dataclass(frozen=True)
class Threshold:
    kind: str
    name: str  # the metric, or the failure mode ("any"); "" for win_rate and rating
    bound: float
    on: str = "estimate"  # or "interval": the pessimistic end of the interval
    reference: str | None = None

    @property
    def label(self) -> str:
        what = self.kind if not self.name else f"{self.kind}.{self.name}"
        if self.reference:
            what += f" (reference {self.reference})"
        (key,) = _BOUNDS[self.kind]
        return f"{what}: {key} {self.bound:g}" + (
            " on the interval" if self.on != "estimate" else ""
        )


def read_thresholds(path: str | Path) -> list[Threshold]:
    """The checks of a TOML (``.toml``) or JSON (``.json``) file; a ReportError naming the
    file and the entry for anything it cannot use."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"--thresholds {path}: cannot read it ({exc}).") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
        raise ReportError(f"--thresholds {path}: not valid {kind} ({exc}).") from None
    if not isinstance(data, dict) or not data:
        raise ReportError(f"--thresholds {path}: expected tables such as [win_rate] min = 0.5.")
    out = []
    for kind, body in data.items():
        if kind not in KINDS:
            raise ReportError(
                f"--thresholds {path}: unknown check [{kind}]; expected one of {', '.join(KINDS)}."
            )
        if kind in ("win_rate", "rating"):
            out.append(_one(path, kind, "", body))
        else:
            if not isinstance(body, dict) or not body:
                raise ReportError(
                    f"--thresholds {path}: [{kind}] needs a name, e.g. [{kind}.clip]."
                )
            out.extend(_one(path, kind, name, entry) for name, entry in body.items())
    return out


def _one(path: Path, kind: str, name: str, body) -> Threshold:
    where = f"--thresholds {path}: [{kind}{'.' + name if name else ''}]"
    (key,) = _BOUNDS[kind]
    if not isinstance(body, dict):
        raise ReportError(f"{where}: expected keys, e.g. {key} = 0.5.")
    unknown = set(body) - {key, "on", "reference"}
    if unknown:
        raise ReportError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; expected {key}.")
    if key not in body:
        raise ReportError(f"{where}: needs {key} = <number>.")
    bound = body[key]
    if isinstance(bound, bool) or not isinstance(bound, int | float) or not math.isfinite(bound):
        raise ReportError(f"{where}: {key} {bound!r} is not a finite number.")
    on = body.get("on", "estimate")
    if on not in ("estimate", "interval"):
        raise ReportError(f'{where}: on {on!r}: expected "estimate" or "interval".')
    reference = body.get("reference")
    if reference is not None and kind != "model_metrics":
        raise ReportError(f"{where}: reference applies to [model_metrics.*] checks only.")
    return Threshold(kind, name, float(bound), on, reference)


def _verdict(threshold: Threshold, value: float, passed: bool | None, reason: str = "") -> dict:
    if passed is None or value is None or (isinstance(value, float) and math.isnan(value)):
        return {"check": threshold.label, "value": math.nan, "verdict": "no data",
                "reason": reason or "the number is missing"}  # fmt: skip
    return {"check": threshold.label, "value": float(value),
            "verdict": "pass" if passed else "fail", "reason": reason}  # fmt: skip


def evaluate(report, thresholds: list[Threshold]) -> pd.DataFrame:
    """One row per threshold: check, value, verdict (pass / fail / no data), reason."""
    rows = [_evaluate_one(report, t) for t in thresholds]
    return pd.DataFrame(rows, columns=["check", "value", "verdict", "reason"])


def _pick(estimate: float, low: float, high: float, t: Threshold, lower_is_pessimistic: bool):
    if t.on == "estimate":
        return estimate
    return low if lower_is_pessimistic else high


def _evaluate_one(report, t: Threshold) -> dict:
    p = report.preference
    if t.kind == "win_rate":
        value = _pick(p["win_rate"], p["win_rate_lower"], p["win_rate_upper"], t, True)
        if p["votes"] == 0:
            return _verdict(t, math.nan, None, "no direct votes between the two models")
        return _verdict(t, value, value >= t.bound, f"{p['votes']} direct votes")
    if t.kind == "rating":
        value = _pick(p["rating_difference"], p["rating_lower"], p["rating_upper"], t, True)
        return _verdict(t, value, None if math.isnan(value) else value >= t.bound,
                        "" if not math.isnan(value) else "a model has no rating")  # fmt: skip
    if t.kind == "metrics":
        rows = report.adherence[report.adherence["metric"] == t.name]
        if rows.empty:
            return _verdict(t, math.nan, None, f"no paired scores of {t.name}")
        r = rows.iloc[0]
        # regression = how much worse the candidate is (positive = worse)
        sign = -1.0 if r["higher_is_better"] else 1.0
        ends = sorted([sign * r["lower"], sign * r["upper"]])
        value = sign * r["difference"] if t.on == "estimate" else ends[1]
        return _verdict(t, value, value <= t.bound, f"regression over {r['cells']} paired cells")
    if t.kind == "model_metrics":
        q = report.quality[report.quality["metric"] == t.name]
        if t.reference is not None:
            q = q[q["reference"] == t.reference]
        if q.empty:
            return _verdict(t, math.nan, None, f"no {t.name} for both models")
        if len(q) > 1:
            refs = ", ".join(map(str, q["reference"]))
            return _verdict(t, math.nan, None, f"{t.name} has several references ({refs}); "
                            "name one with reference = \"...\"")  # fmt: skip
        r = q.iloc[0]
        value = (-1.0 if r["higher_is_better"] else 1.0) * r["difference"]
        return _verdict(t, value, value <= t.bound, f"regression, reference {r['reference']!r}")
    failures = report.failures
    if failures is None or failures.empty:
        return _verdict(t, math.nan, None, "no reviewed images of both models")
    mode = ANY_FAILURE if t.name == "any" else t.name
    rows = failures[(failures["flag"] == mode) & (failures["source"] == BLIND)]
    if rows.empty:
        return _verdict(t, math.nan, None, f"no blind-sample rate of {mode!r} for both models")
    r = rows.iloc[0]
    value = r["increase"] if t.on == "estimate" else r["increase_high"]
    reviewed = f"{r['candidate_reviewed']} and {r['baseline_reviewed']} images reviewed blind"
    return _verdict(t, value, value <= t.bound, f"increase of the rate; {reviewed}")
