"""Raters and their votes outside the web app: simulated votes in bulk, the policy's exclusions.

A mixin of :class:`arena.storage.store.Store`. The web app's own battles and votes are
written by ``arena.voting.battles`` (the hot path); these verbs serve the offline demo
and the rater-exclusion policy (``arena.voting.exclusion``).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, select

from arena.storage import db


@dataclass(frozen=True)
class VotedBattle:
    """A battle and its vote, written together (simulated raters, no web session)."""

    prompt_id: int
    left_image_id: int
    right_image_id: int
    rater_id: int
    outcome: str
    decision_ms: int
    served_at: datetime
    voted_at: datetime
    policy: str = "simulated"


class RaterVerbs:
    """Store verbs for raters and bulk votes; ``self`` is the Store."""

    def last_vote_at(self) -> datetime | None:
        """When the latest vote was cast (naive UTC), or None with no votes."""
        with self.session() as s:
            return s.scalar(select(func.max(db.Vote.created_at)))

    def add_voted_battles(self, rows: Sequence[VotedBattle]) -> int:
        """Write normal battles with their votes in one transaction; returns how many."""
        if not rows:
            return 0
        battles = [
            {
                "token": secrets.token_hex(16),
                "prompt_id": r.prompt_id,
                "left_image_id": r.left_image_id,
                "right_image_id": r.right_image_id,
                "rater_id": r.rater_id,
                "policy": r.policy,
                "kind": "normal",
                "served_at": r.served_at,
            }
            for r in rows
        ]
        with self.session() as s:
            ids = s.scalars(
                insert(db.Battle).returning(db.Battle.id, sort_by_parameter_order=True), battles
            ).all()
            votes = [
                {
                    "battle_id": battle_id,
                    "rater_id": r.rater_id,
                    "outcome": r.outcome,
                    "decision_ms": r.decision_ms,
                    "created_at": r.voted_at,
                }
                for r, battle_id in zip(rows, ids, strict=True)
            ]
            s.execute(insert(db.Vote), votes)
        return len(rows)

    def set_policy_exclusions(self, flagged: Mapping[int, str]) -> dict[str, int]:
        """The automatic policy's decision for every rater an admin has not decided on:
        exclude those in ``flagged`` (rater id -> reasons), include the rest again.

        Returns how many raters were newly excluded and included again.
        """
        changed = {"excluded": 0, "included": 0}
        with self.session() as s:
            for rater in s.scalars(select(db.Rater).where(db.Rater.exclusion_manual.is_(False))):
                reasons = flagged.get(rater.id, "")
                if reasons and not rater.excluded:
                    rater.excluded, rater.excluded_reason = True, f"policy: {reasons}"
                    changed["excluded"] += 1
                elif not reasons and rater.excluded:
                    rater.excluded, rater.excluded_reason = False, ""
                    changed["included"] += 1
        return changed
