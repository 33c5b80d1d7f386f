"""Reviewers' verdicts: failure flags on images, editable, attributed to the reviewer.

A mixin of :class:`arena.storage.store.Store`. A *verdict* is one reviewer's set of
failure modes on one image (or "no failure"), given in the blind review or while
browsing; it is stored as rows of ``image_flags`` (``db.ImageFlag``) and replaced as a
whole when the reviewer saves again (``save_review``) or removed (``remove_review``).
The modes come from the ``failure_modes`` setting. The gallery's reads are in
:mod:`arena.storage.gallery_verbs`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import pandas as pd
from sqlalchemy import and_, delete, func, select

from arena.stats.failures import NO_FAILURE
from arena.storage import db
from arena.storage.errors import StoreError
from arena.storage.gallery_verbs import read_parts

#: The failure mode whose flag needs a note saying what failed.
OTHER_MODE = "other"
MAX_MODE_CHARS = 40
MAX_NOTE_CHARS = 2000
MAX_REVIEWER_CHARS = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def parse_failure_modes(text: str) -> tuple[str, ...]:
    """The ``failure_modes`` setting (comma-separated) as a tuple; a clear error otherwise."""
    modes = [m.strip() for m in str(text).split(",")]
    modes = [m for m in modes if m]
    where = "failure_modes (ARENA_FAILURE_MODES)"
    if not modes:
        raise StoreError(f"{where} is empty; list the modes, e.g. 'hands, text rendering, other'.")
    for mode in modes:
        if len(mode) > MAX_MODE_CHARS or _CONTROL.search(mode):
            raise StoreError(
                f"{where}: mode {mode[:60]!r} must be 1 to {MAX_MODE_CHARS} printable characters."
            )
        if mode.lower() == NO_FAILURE:
            raise StoreError(
                f"{where}: {NO_FAILURE!r} is reserved for a verdict of no failure; remove it."
            )
    lowered = [m.lower() for m in modes]
    twice = sorted({m for m in modes if lowered.count(m.lower()) > 1})
    if twice:
        raise StoreError(f"{where} lists {', '.join(map(repr, twice))} more than once.")
    return tuple(modes)


def check_reviewer(reviewer: str) -> str:
    name = str(reviewer or "").strip()
    if not name or len(name) > MAX_REVIEWER_CHARS or _CONTROL.search(name):
        raise StoreError(
            f"reviewer {name[:60]!r}: expected a name of 1 to {MAX_REVIEWER_CHARS} printable "
            "characters (the reviewer's login)."
        )
    return name


class ReviewVerbs:
    """Store verbs for reviewers' flags and the gallery; ``self`` is the Store."""

    @property
    def failure_modes(self) -> tuple[str, ...]:
        return parse_failure_modes(self.settings.failure_modes)

    def check_flags(self, flags: Iterable[str], note: str = "") -> tuple[str, ...]:
        """The verdict's flags in the configured order; ``()`` (or ``("none",)``) is the
        verdict "no failure". Unknown modes, "none" with a mode, and "other" without a
        note are refused."""
        modes = self.failure_modes
        by_lower = {m.lower(): m for m in modes}
        chosen = []
        for flag in flags or ():
            key = str(flag).strip().lower()
            if key == NO_FAILURE:
                chosen.append(NO_FAILURE)
            elif key in by_lower:
                chosen.append(by_lower[key])
            else:
                raise StoreError(
                    f"failure mode {str(flag)[:60]!r} is not one of {', '.join(modes)} "
                    "(setting failure_modes)."
                )
        chosen = list(dict.fromkeys(chosen))
        if NO_FAILURE in chosen and len(chosen) > 1:
            raise StoreError(
                f"a verdict is either {NO_FAILURE!r} (no failure) or failure modes, not both."
            )
        if OTHER_MODE in chosen and not note.strip():
            raise StoreError(f"the mode {OTHER_MODE!r} needs a note saying what failed.")
        if not chosen or chosen == [NO_FAILURE]:
            return (NO_FAILURE,)
        return tuple(m for m in modes if m in chosen)

    def save_review(
        self,
        image_id: int,
        reviewer: str,
        flags: Iterable[str] = (),
        note: str = "",
        blind: bool = False,
    ) -> tuple[str, ...]:
        """Store ``reviewer``'s verdict on the image (replacing their earlier verdict of
        the same kind, blind or open); returns the flags stored. One transaction: a
        refused verdict leaves the earlier one as it was."""
        reviewer = check_reviewer(reviewer)
        note = str(note or "").strip()
        if len(note) > MAX_NOTE_CHARS:
            raise StoreError(f"note of {len(note)} characters; at most {MAX_NOTE_CHARS}.")
        wanted = self.check_flags(flags, note)
        f = db.ImageFlag
        with self.write_session() as s:
            if s.get(db.Image, int(image_id)) is None:
                raise StoreError(f"image {image_id}: no such image.")
            mine = s.scalars(
                select(f).where(
                    f.image_id == int(image_id), f.reviewer == reviewer, f.blind.is_(bool(blind))
                )
            )
            existing = {row.flag: row for row in mine}
            now = db.utcnow()
            for flag in wanted:
                row = existing.pop(flag, None)
                if row is None:
                    s.add(
                        f(
                            image_id=int(image_id),
                            reviewer=reviewer,
                            flag=flag,
                            note=note,
                            blind=bool(blind),
                            created_at=now,
                            updated_at=now,
                        )
                    )
                else:
                    row.note, row.updated_at = note, now
            for row in existing.values():
                s.delete(row)
        return wanted

    def remove_review(self, image_id: int, reviewer: str, blind: bool | None = None) -> int:
        """Delete ``reviewer``'s verdict on the image (blind, open, or both with None);
        returns the rows deleted."""
        reviewer = check_reviewer(reviewer)
        f = db.ImageFlag.__table__
        query = delete(f).where(f.c.image_id == int(image_id), f.c.reviewer == reviewer)
        if blind is not None:
            query = query.where(f.c.blind.is_(bool(blind)))
        with self.write_session() as s:
            return int(s.execute(query).rowcount or 0)

    def image_flags_frame(self, image_ids: Sequence[int] | None = None) -> pd.DataFrame:
        """One row per stored flag: flag_id, image_id, model, prompt_id, reviewer, flag
        ("none": looked, no failure), note, blind, created_at, updated_at; sorted by image,
        reviewer, blind, flag. ``image_ids`` keeps those images' flags only."""
        f, i, m = db.ImageFlag.__table__, db.Image.__table__, db.Model.__table__
        query = (
            select(
                f.c.id.label("flag_id"),
                f.c.image_id,
                m.c.name.label("model"),
                i.c.prompt_id,
                f.c.reviewer,
                f.c.flag,
                f.c.note,
                f.c.blind,
                f.c.created_at,
                f.c.updated_at,
            )
            .join(i, i.c.id == f.c.image_id)
            .join(m, m.c.id == i.c.model_id)
        )
        with self.engine.connect() as conn:
            frame = read_parts(conn, query, f.c.image_id, image_ids)
        frame["blind"] = frame["blind"].astype(bool)
        frame["prompt_id"] = frame["prompt_id"].astype("Int64")
        frame = frame.sort_values(["image_id", "reviewer", "blind", "flag"], kind="stable")
        return frame.reset_index(drop=True)

    def flags_signature(self) -> tuple:
        """Changes whenever a flag is added, changed or removed (caches of failure rates)."""
        f = db.ImageFlag.__table__
        with self.engine.connect() as conn:
            row = conn.execute(
                select(func.count(f.c.id), func.max(f.c.id), func.max(f.c.updated_at))
            ).one()
        return tuple(row)

    def reviewed_blind(self, reviewer: str) -> set[int]:
        """Images this reviewer already gave a blind verdict on."""
        f = db.ImageFlag.__table__
        query = select(f.c.image_id).where(
            and_(f.c.reviewer == check_reviewer(reviewer), f.c.blind.is_(True))
        )
        with self.engine.connect() as conn:
            return {row[0] for row in conn.execute(query)}
