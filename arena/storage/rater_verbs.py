"""Raters: their ids, who is excluded (by an admin or the policy), and votes in bulk.

A mixin of :class:`arena.storage.store.Store`. The web app asks for a rater's id on
every battle it serves (``rater_id``: a read, the write lock only on first sight);
the web app's own battles and votes are written by ``arena.voting.battles`` (the hot
path); ``add_voted_battles`` serves the offline demo's simulated raters and
``set_policy_exclusions`` the rater-exclusion policy (``arena.voting.exclusion``).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import pandas as pd
from sqlalchemy import func, insert, select

from arena.storage import db
from arena.storage.errors import StoreError
from arena.storage.vocabulary import RATER_GROUP_PATTERN, RATER_KINDS

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def check_rater_group(group: str | None) -> str | None:
    """``group`` stripped, None for none (None or blank); a StoreError if it is not a
    group name (letters, digits, '-', '_', '.'; 1 to 40 characters)."""
    if group is None or not str(group).strip():
        return None
    group = str(group).strip()
    if not re.match(RATER_GROUP_PATTERN, group):
        raise StoreError(
            f"rater group {group[:60]!r}: expected 1 to 40 letters, digits, '-', '_' or '.', "
            "starting with a letter or digit (e.g. expert, crowd)."
        )
    return group


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

    def rater_id(
        self,
        external_id: str,
        kind: str = "human",
        login: str | None = None,
        session: Session | None = None,
        client_group: str | None = None,
        group: str | None = None,
    ) -> int:
        """The id of the rater with this external id, created on first sight.

        ``kind`` and ``group`` (the rater group, e.g. ``expert``) are written when the
        rater is created; an existing rater keeps its own (``set_rater_group`` changes
        a group). ``client_group`` is the keyed address-group hash of a rater the web app
        created (``db.web_raters``); scripts and simulations leave it None. Without
        ``session`` the lookup is a read and only a first sight takes the write lock:
        the web app asks on every battle it serves.
        """
        if kind not in RATER_KINDS:
            raise StoreError(f"rater kind {kind!r} is not one of {RATER_KINDS}.")
        group = check_rater_group(group)

        def get(s: Session) -> int:
            rid = self.find_rater(external_id, s)
            if rid is None:
                rater = db.Rater(
                    external_id=external_id,
                    kind=kind,
                    login=login,
                    client_group=client_group,
                    rater_group=group,
                )
                s.add(rater)
                s.flush()
                rid = rater.id
            return rid

        if session is not None:
            return get(session)
        rid = self.find_rater(external_id)
        if rid is not None:
            return rid
        with self.write_session() as s:
            return get(s)  # another request may have created it meanwhile

    def find_rater(self, external_id: str, session: Session | None = None) -> int | None:
        """The id of the rater with this external id, or None (never creates one)."""
        query = select(db.Rater.id).where(db.Rater.external_id == external_id)
        if session is not None:
            return session.scalar(query)
        with self.session() as s:
            return s.scalar(query)

    def set_rater_exclusion(self, rater_id: int, excluded: bool, reason: str = "") -> None:
        """An admin's decision: (re-)include or exclude a rater; the policy won't undo it."""
        with self.session() as s:
            rater = s.get(db.Rater, rater_id)
            if rater is None:
                raise StoreError(f"unknown rater id {rater_id}; see the Raters table on Admin.")
            rater.excluded = excluded
            rater.excluded_reason = (
                f"admin: {reason}" if excluded and reason else ("admin" if excluded else "")
            )
            rater.exclusion_manual = True

    def set_rater_group(self, rater_id: int, group: str | None) -> str | None:
        """Put a rater in ``group`` (None or blank: in none); returns the stored group.

        The Admin app's verb (and a judge's); a browser never reaches it."""
        group = check_rater_group(group)
        with self.session() as s:
            rater = s.get(db.Rater, rater_id)
            if rater is None:
                raise StoreError(f"unknown rater id {rater_id}; see the Raters table on Admin.")
            rater.rater_group = group
        return group

    def judge_rater(self, name: str, details: Mapping, group: str | None = None) -> int:
        """The rater of the AI judge ``name`` (external id ``judge:<name>``, kind
        ``judge``), created with ``details`` (its model, template and answer words) and
        ``group``. An existing rater of that name must be the same judge: another
        template under an old name would mix two judges' votes."""
        group = check_rater_group(group)
        external_id = f"judge:{name}"
        with self.write_session() as s:
            rater = s.scalar(select(db.Rater).where(db.Rater.external_id == external_id))
            if rater is None:
                rater = db.Rater(
                    external_id=external_id, kind="judge", rater_group=group, details=dict(details)
                )
                s.add(rater)
                s.flush()
                return rater.id
            if rater.kind != "judge" or (rater.details or {}) != dict(details):
                raise StoreError(
                    f"a rater named {external_id!r} already exists with another model, "
                    "template or answer words; give this judge another name (--name)."
                )
            if group is not None and rater.rater_group != group:
                rater.rater_group = group
            return rater.id

    def voted_orders(self, rater_id: int) -> set[tuple[int, int]]:
        """(left image id, right image id) of every battle this rater voted on."""
        v, b = db.Vote.__table__, db.Battle.__table__
        query = (
            select(b.c.left_image_id, b.c.right_image_id)
            .join(v, v.c.battle_id == b.c.id)
            .where(b.c.rater_id == rater_id)
        )
        with self.session() as s:
            return {(int(a), int(c)) for a, c in s.execute(query)}

    def set_login_groups(self, groups: Mapping[str, str | None]) -> int:
        """The login file's groups (login name -> group or None) for the raters that
        already logged in (external id ``login:<name>``); returns how many changed.

        A login without a group in the file keeps the group it has (an admin's)."""
        checked = {login: check_rater_group(g) for login, g in groups.items()}
        wanted = {f"login:{login}": g for login, g in checked.items() if g is not None}
        if not wanted:
            return 0
        changed = 0
        with self.session() as s:
            for rater in s.scalars(select(db.Rater).where(db.Rater.external_id.in_(wanted))):
                if rater.rater_group != wanted[rater.external_id]:
                    rater.rater_group = wanted[rater.external_id]
                    changed += 1
        return changed

    def raters_frame(self) -> pd.DataFrame:
        """rater_id, external_id, kind, rater_group, login, excluded, excluded_reason,
        exclusion_manual."""
        r = db.Rater.__table__
        query = select(
            r.c.id.label("rater_id"),
            r.c.external_id,
            r.c.kind,
            r.c.rater_group,
            r.c.login,
            r.c.excluded,
            r.c.excluded_reason,
            r.c.exclusion_manual,
        ).order_by(r.c.id)
        with self.engine.connect() as conn:
            return pd.read_sql(query, conn)

    def judges_frame(self) -> pd.DataFrame:
        """One row per machine judge (rater kind ``judge``): rater_id, judge (its name:
        ``details["name"]``, else the external id without ``judge:``), judge_model
        (``details["model"]``, "" if unknown), rater_group. The reports name judges by it."""
        r = db.Rater.__table__
        query = (
            select(r.c.id, r.c.external_id, r.c.rater_group, r.c.details)
            .where(r.c.kind == "judge")
            .order_by(r.c.id)
        )
        with self.session() as s:
            found = s.execute(query).all()
        rows = []
        for rid, external_id, group, details in found:
            details = details if isinstance(details, dict) else {}
            name = details.get("name") or external_id.removeprefix("judge:")
            rows.append((rid, str(name), str(details.get("model") or ""), group))
        return pd.DataFrame(rows, columns=["rater_id", "judge", "judge_model", "rater_group"])

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
