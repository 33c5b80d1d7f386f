"""Which votes count, and votes counted per model pair: one filter for every reader.

Votes are read three ways, and each reader leaves out different votes on purpose;
the choice is spelled out where it is made, by the flags of :func:`counted_votes`:

* the reports (``Store.votes_frame``): no votes of excluded raters, none of web
  raters still on probation, no gold battles (each can be asked for);
* the pair-choice rule (``arena.voting.active_pairing``): no votes of excluded
  raters, no gold battles; votes on probation count (they will soon);
* the matchmaker's balance (``arena.voting.matchmaking``): every vote on a normal
  battle, whoever cast it: it evens out what raters were *shown*.

The two voting readers leave the judges (rater kind ``judge``) out: they allocate what
*people* are shown, and a machine judge's votes say nothing of how well the human
ratings know a pair. The reports keep them in the frame and leave them out by their
filters (``arena.reports.frames.Filters``).

tests/test_vote_counts.py pins what each reader counts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import case, func, or_, select
from sqlalchemy.sql import Select

from arena.stats.pairs import OUTCOMES
from arena.storage import db
from arena.storage.columnar import positions


def counted_votes(
    query: Select,
    probation_votes: int,
    *,
    include_excluded: bool,
    include_probation: bool,
    include_gold: bool,
    include_judges: bool = True,
) -> Select:
    """Narrow ``query`` (votes joined to their battles) to the votes that count.

    ``include_excluded`` keeps the votes of raters an admin or the exclusion policy
    excluded; ``include_probation`` keeps the votes of web raters (``db.web_raters``)
    with fewer than ``probation_votes`` votes; ``include_gold`` keeps gold battles;
    ``include_judges`` keeps the votes of raters of kind ``judge``.
    """
    v, b, r = db.Vote.__table__, db.Battle.__table__, db.Rater.__table__
    if not include_excluded or not include_probation or not include_judges:
        query = query.join(r, r.c.id == v.c.rater_id)
    if not include_judges:
        query = query.where(r.c.kind != "judge")
    if not include_excluded:
        query = query.where(r.c.excluded.is_(False))
    if not include_probation and probation_votes > 1:  # new web raters: stored, not counted yet
        p = db.Vote.__table__.alias("probation")
        counted = (
            select(p.c.rater_id).group_by(p.c.rater_id).having(func.count() >= probation_votes)
        )
        query = query.where(or_(~db.web_raters(r), v.c.rater_id.in_(counted)))
    if not include_gold:
        query = query.where(b.c.kind == "normal")
    return query


class VoteCountVerbs:
    """Store verbs that count votes per model pair; ``self`` is the Store."""

    def pair_outcome_counts(
        self,
        model_ids: Sequence[int],
        *,
        include_excluded: bool,
        include_probation: bool,
        include_gold: bool = False,
        include_judges: bool = True,
    ) -> np.ndarray:
        """Votes per (left model, right model, outcome): an (n, n, 4) int64 array over
        ``model_ids`` order, outcomes in ``OUTCOMES`` order; the flags as in
        :func:`counted_votes`. Models not in ``model_ids``, and a model against itself,
        are left out.

        The outcomes are pivoted in SQL (one row per ordered model pair, not per pair and
        outcome) and accumulated with numpy: a background refresh then holds the GIL for
        a few milliseconds instead of a Python loop over every row, which would stall the
        request threads choosing pairs (the database work itself releases the GIL).
        """
        v, b = db.Vote.__table__, db.Battle.__table__
        li, ri = db.Image.__table__.alias("li"), db.Image.__table__.alias("ri")
        query = (
            select(
                li.c.model_id,
                ri.c.model_id,
                *(func.sum(case((v.c.outcome == outcome, 1), else_=0)) for outcome in OUTCOMES),
            )
            .select_from(v)
            .join(b, b.c.id == v.c.battle_id)
            .join(li, li.c.id == b.c.left_image_id)
            .join(ri, ri.c.id == b.c.right_image_id)
            .group_by(li.c.model_id, ri.c.model_id)
        )
        query = counted_votes(
            query,
            self.settings.probation_votes,
            include_excluded=include_excluded,
            include_probation=include_probation,
            include_gold=include_gold,
            include_judges=include_judges,
        )
        width = 2 + len(OUTCOMES)
        with self.engine.connect() as conn:
            rows = np.array(
                [tuple(row) for row in conn.execute(query).tuples()], dtype=np.int64
            ).reshape(-1, width)
        ids = np.asarray(model_ids, dtype=np.int64)
        left, right = (positions(rows[:, k], ids) for k in (0, 1))
        keep = (left >= 0) & (right >= 0) & (left != right)
        cells = np.zeros((len(ids), len(ids), len(OUTCOMES)), dtype=np.int64)
        np.add.at(cells, (left[keep], right[keep]), rows[keep, 2:])
        return cells
