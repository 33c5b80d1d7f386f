"""Prompt sets as a whole: which are held out, and the table `arena prompt-sets` shows.

A mixin of :class:`arena.storage.store.Store`. A *held-out* set is kept for the final
evaluation (a published benchmark such as PartiPrompts, say, that nothing is tuned on);
the flag lives in ``prompt_sets`` (migration 0007), keyed by the set's name, and a set
without a row there is not held out. Reports read it through ``prompts_frame()``'s
``held_out`` column.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
from sqlalchemy import func, select

from arena.storage import db
from arena.storage.errors import StoreError


def mark_held_out(session, name: str, held_out: bool) -> None:
    """Set ``name``'s held-out flag inside ``session`` (the caller's transaction)."""
    row = session.get(db.PromptSet, name)
    if row is None:
        session.add(db.PromptSet(name=name, held_out=bool(held_out), updated_at=db.utcnow()))
    else:
        row.held_out = bool(held_out)
        row.updated_at = db.utcnow()


class PromptSetVerbs:
    """Store verbs for prompt sets; ``self`` is the Store."""

    def set_held_out(self, names: Iterable[str], held_out: bool) -> None:
        """Mark (``held_out`` True) or unmark the prompt sets ``names``, in one transaction.

        Raises :class:`StoreError` naming the sets that hold no prompts, with the known
        ones; nothing is changed then.
        """
        names = list(dict.fromkeys(n.strip() for n in names))
        with self.session() as s:
            known = set(s.scalars(select(db.Prompt.prompt_set).distinct()))
            unknown = [n for n in names if n not in known]
            if unknown:
                raise StoreError(
                    f"no prompt set named {', '.join(map(repr, unknown))}; known sets: "
                    f"{', '.join(sorted(known)) or 'none'} (import one with "
                    "`arena import-prompts FILE --set NAME`)."
                )
            for name in names:
                mark_held_out(s, name, held_out)

    def held_out_sets(self) -> list[str]:
        """Names of the held-out prompt sets, sorted."""
        with self.session() as s:
            return sorted(
                s.scalars(select(db.PromptSet.name).where(db.PromptSet.held_out.is_(True)))
            )

    def prompt_sets_frame(self) -> pd.DataFrame:
        """One row per prompt set that holds prompts: prompt_set, prompts, categories
        (distinct non-empty), held_out."""
        p, ps = db.Prompt.__table__, db.PromptSet.__table__
        nonempty = func.nullif(p.c.category, "")
        query = (
            select(
                p.c.prompt_set,
                func.count(p.c.id).label("prompts"),
                func.count(func.distinct(nonempty)).label("categories"),
                ps.c.held_out,  # one row per name (its key), or NULL: not held out
            )
            .select_from(p.outerjoin(ps, ps.c.name == p.c.prompt_set))
            .group_by(p.c.prompt_set, ps.c.held_out)
            .order_by(p.c.prompt_set)
        )
        with self.engine.connect() as conn:
            frame = pd.read_sql(query, conn)
        frame["held_out"] = frame["held_out"].fillna(False).astype(bool)
        return frame
