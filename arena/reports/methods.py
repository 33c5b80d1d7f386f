"""How a leaderboard's numbers are made: the options a reader picks, and what they imply.

:class:`BoardOptions` is the choice (tie handling, interval, style control,
reweighting, flip counts) that travels from the CLI, the Leaderboard tab and the
exports to :func:`arena.reports.leaderboard.leaderboard_frame` and into the cache key;
the tables and sentences here turn the chosen fit's extras into what a page shows.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from arena.reports.frames import ReportError
from arena.stats import ratings as R


class LeaderboardError(ReportError):
    """An option the leaderboard cannot use (anchor, rounds, models to compare)."""


#: Reweighting's floor when it is switched on without one: arena-rank's default.
REWEIGHT_FLOOR = 50


@dataclass(frozen=True)
class BoardOptions:
    """How the ratings are made: the model, its weighting, the interval, the extras.

    ``ties``: split (half a win each way), drop, or davidson (a tie parameter fitted).
    ``ci``: bootstrap (percentile) or sandwich (closed form). ``style``: feature names
    to control for (:mod:`arena.reports.style`; empty: off). ``reweight``: the floor of
    1/max(pair count, floor) weighting, or None (off). ``flips``: count the votes that
    hold each rank.
    """

    ties: str = "split"
    ci: str = "bootstrap"
    style: tuple[str, ...] = ()
    reweight: float | None = None
    flips: bool = True

    def __post_init__(self):
        from arena.stats.fits import check_options

        object.__setattr__(self, "style", tuple(self.style or ()))
        try:
            check_options(self.ties, self.ci, bool(self.style), self.reweight)
        except ValueError as exc:
            raise LeaderboardError(str(exc)) from None

    def key(self) -> tuple:
        return (self.ties, self.ci, self.style, self.reweight, self.flips)

    @property
    def plain_order(self) -> bool:
        """The board ranks by the plain BT fit the flip counts are counted on."""
        return self.ties != "davidson" and not self.style and self.reweight is None

    def describe(self, rounds: int, level: float = 0.95) -> str:
        """One sentence on the model and the interval, for under the board."""
        ties = {
            "split": "ties and both-bad votes count half a win each way",
            "drop": "ties and both-bad votes left out",
            "davidson": "ties and both-bad votes modelled (Davidson's tie parameter ν)",
        }[self.ties]
        ci = (
            f"{level:.0%} bootstrap intervals ({rounds} rounds)"
            if self.ci == "bootstrap"
            else f"{level:.0%} sandwich intervals (closed form)"
        )
        parts = [f"Bradley-Terry on the Elo scale, {ties}; {ci}"]
        if self.style:
            parts.append(f"controlled for {', '.join(self.style)}")
        if self.reweight is not None:
            parts.append(f"pairs reweighted by 1/max(votes of the pair, {self.reweight:g})")
        return "; ".join(parts) + "."


def style_table(ratings: R.Ratings | None) -> pd.DataFrame:
    """Style control's coefficients: Elo points per SD of each feature's left-minus-right
    difference, with their interval (empty when style control is off)."""
    columns = ["feature", "elo_per_sd", "ci_lower", "ci_upper", "sd"]
    if ratings is None or ratings.style is None:
        return pd.DataFrame(columns=columns)
    st = ratings.style
    return pd.DataFrame(
        {
            "feature": st.names,
            "elo_per_sd": st.coefficient,
            "ci_lower": st.lower,
            "ci_upper": st.upper,
            "sd": st.sd,
        }
    )


def flip_table(ratings: R.Ratings | None) -> pd.DataFrame:
    """Per adjacent ranked pair (and the top model): the fewest votes whose removal flips
    the order, the method, and the share of all votes."""
    columns = ["position", "upper", "lower", "votes_to_flip", "share", "method"]
    if ratings is None or ratings.flips is None:
        return pd.DataFrame(columns=columns)
    names = ratings.names
    rows = [
        ("top", ratings.top_flip),
        *((f"{k + 1} vs {k + 2}", f) for k, f in enumerate(ratings.flips)),
    ]
    return pd.DataFrame(
        [
            (pos, names[f.upper], names[f.lower], f.votes, f.share, f.method)
            for pos, f in rows
            if f is not None
        ],
        columns=columns,
    ).astype({"votes_to_flip": "Int64"})


def method_notes(ratings: R.Ratings | None, options: BoardOptions, rounds: int) -> list[str]:
    """Sentences a reader needs beside the board: the method, the tie model's fit, the
    style features left out, and a warning where a handful of votes decides a rank."""
    if ratings is None:
        return []
    notes = [options.describe(rounds, ratings.level)]
    if ratings.tie_model is not None:
        tm = ratings.tie_model
        notes.append(
            f"Davidson tie parameter ν = {tm.nu:.3f} ({ratings.level:.0%} interval "
            f"{tm.lower:.3f} to {tm.upper:.3f}); predicted tie rate {tm.predicted_rate:.1%} "
            f"against {tm.observed_rate:.1%} observed (ties and both-bad votes)."
        )
    if ratings.style is not None:
        st = ratings.style
        total = ratings.counts.total
        text = f"Style control fitted on {st.votes} of {total} votes"
        if st.votes < total:
            text += " (the others lack a feature value or involve a model without a rating)"
        if st.constant:
            text += f"; {', '.join(st.constant)} did not vary and was left out"
        notes.append(text + ".")
    if ratings.flips is not None and not options.plain_order:
        notes.append(
            "Votes to flip are counted on the plain Bradley-Terry order (ties "
            f"{'split' if options.ties == 'davidson' else options.ties}, no style control, no "
            "reweighting), which this board's method may reorder; the board leaves them out."
        )
    if ratings.flips is not None:
        from arena.stats.flips import fragile

        shaky = [f for f in [ratings.top_flip, *ratings.flips] if f is not None and fragile(f)]
        if shaky:
            pairs = "; ".join(
                f"{ratings.names[f.upper]} over {ratings.names[f.lower]}: {f.votes} vote(s)"
                for f in shaky
            )
            notes.append(f"Warning: a handful of votes decides these orders ({pairs}).")
    return notes
