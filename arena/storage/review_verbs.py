"""Reviewers' verdicts (failure flags) and the gallery's reads.

A mixin of :class:`arena.storage.store.Store`. A *verdict* is one reviewer's set of
failure modes on one image (or "no failure"), given in the blind review or while
browsing; it is stored as rows of ``image_flags`` (``db.ImageFlag``) and replaced as a
whole when the reviewer saves again (``save_review``) or removed (``remove_review``).
The modes come from the ``failure_modes`` setting. The gallery reads one prompt's or one
model's images with their prompt, per-image scores, vote counts and flags through the
``gallery_*`` verbs: each is a few indexed queries, so a view of one prompt stays fast on
a workspace of any size (``benchmarks/gallery.py``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from sqlalchemy import and_, delete, false, func, or_, select

from arena.stats.failures import NO_FAILURE
from arena.storage import columnar, db
from arena.storage.errors import StoreError
from arena.storage.vote_counts import counted_votes

#: The failure mode whose flag needs a note saying what failed.
OTHER_MODE = "other"
MAX_MODE_CHARS = 40
MAX_NOTE_CHARS = 2000
MAX_REVIEWER_CHARS = 200
#: Ids per ``IN (...)`` list: well under every back end's limit on bound parameters.
CHUNK = 5000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: ``seed`` of :meth:`ReviewVerbs.gallery_images` when any seed will do.
ANY_SEED = object()


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


def _chunks(ids: Sequence[int]) -> Iterable[list[int]]:
    ids = [int(i) for i in ids]
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


def _read_parts(conn, query, column, ids: Sequence[int] | None) -> pd.DataFrame:
    """``query`` read as one frame; with ``ids``, only rows whose ``column`` is one of
    them, read in chunks of ``IN`` lists (no ids: the query's empty frame)."""
    if ids is None:
        return pd.read_sql(query, conn)
    parts = [pd.read_sql(query.where(column.in_(chunk)), conn) for chunk in _chunks(ids)]
    if not parts:
        return pd.read_sql(query.where(false()), conn)
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]


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
            frame = _read_parts(conn, query, f.c.image_id, image_ids)
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

    # -- the gallery -------------------------------------------------------------------------
    def gallery_images(
        self,
        *,
        prompt_id: int | None = None,
        seed=ANY_SEED,
        model: str | None = None,
        category: str | None = None,
        prompt_set: str | None = None,
        broken: bool | None = None,
        image_ids: Sequence[int] | None = None,
    ) -> pd.DataFrame:
        """Images of models (not reference sets) with their prompt: image_id, sha256, model,
        prompt_id, prompt_set, external_id, category, text, seed, width, height, broken;
        sorted by model, prompt, seed. Each argument narrows: one prompt (and ``seed``,
        None for images without one), one model, a category, a prompt set, broken or
        not, these ids."""
        i, m, p = db.Image.__table__, db.Model.__table__, db.Prompt.__table__
        query = (
            select(
                i.c.id.label("image_id"),
                i.c.sha256,
                m.c.name.label("model"),
                i.c.prompt_id,
                p.c.prompt_set,
                p.c.external_id,
                p.c.category,
                p.c.text,
                i.c.seed,
                i.c.width,
                i.c.height,
                i.c.broken,
            )
            .join(m, m.c.id == i.c.model_id)
            .outerjoin(p, p.c.id == i.c.prompt_id)
            .where(m.c.kind != "reference")
        )
        if prompt_id is not None:
            query = query.where(i.c.prompt_id == int(prompt_id))
        if seed is not ANY_SEED:
            query = query.where(i.c.seed.is_(None) if seed is None else i.c.seed == int(seed))
        if model is not None:
            query = query.where(m.c.name == model)
        if category is not None:
            query = query.where(p.c.category == category)
        if prompt_set is not None:
            query = query.where(p.c.prompt_set == prompt_set)
        if broken is not None:
            query = query.where(i.c.broken.is_not(None) if broken else i.c.broken.is_(None))
        with self.engine.connect() as conn:
            frame = _read_parts(conn, query, i.c.id, image_ids)
        frame["seed"] = frame["seed"].astype("Int64")
        frame["prompt_id"] = frame["prompt_id"].astype("Int64")
        frame = frame.sort_values(["model", "prompt_id", "seed", "image_id"], kind="stable")
        return frame.reset_index(drop=True)

    def gallery_seeds(self, prompt_id: int) -> list[int | None]:
        """The seeds a prompt has images for (None: images without a seed), ascending."""
        i, m = db.Image.__table__, db.Model.__table__
        query = (
            select(i.c.seed)
            .join(m, m.c.id == i.c.model_id)
            .where(i.c.prompt_id == int(prompt_id), m.c.kind != "reference")
            .distinct()
        )
        with self.engine.connect() as conn:
            seeds = [row[0] for row in conn.execute(query)]
        return sorted(seeds, key=lambda s: (s is not None, s if s is not None else 0))

    def gallery_prompt_ids(self) -> np.ndarray:
        """Ids of the prompts with images of a model (not a reference set), ascending."""
        i, m = db.Image.__table__, db.Model.__table__
        query = (
            select(i.c.prompt_id)
            .join(m, m.c.id == i.c.model_id)
            .where(i.c.prompt_id.is_not(None), m.c.kind != "reference")
            .distinct()
            .order_by(i.c.prompt_id)
        )
        with self.engine.connect() as conn:
            return np.array([row[0] for row in conn.execute(query)], dtype=np.int64)

    def image_scores(self, image_ids: Sequence[int]) -> pd.DataFrame:
        """Per (image, metric) of these images: image_id, metric, version, value,
        higher_is_better -- the newest score where a metric was scored in several versions."""
        sc = db.Score.__table__
        frames = []
        with self.engine.connect() as conn:
            for chunk in _chunks(image_ids):
                query = select(
                    sc.c.id,
                    sc.c.image_id,
                    sc.c.metric,
                    sc.c.version,
                    sc.c.value,
                    sc.c.higher_is_better,
                ).where(sc.c.image_id.in_(chunk))
                frames.append(pd.read_sql(query, conn))
        columns = ["image_id", "metric", "version", "value", "higher_is_better"]
        if not frames:
            return pd.DataFrame(columns=columns)
        frame = pd.concat(frames, ignore_index=True).sort_values("id")
        frame = frame.drop_duplicates(["image_id", "metric"], keep="last")
        frame["higher_is_better"] = frame["higher_is_better"].astype(bool)
        return frame.sort_values(["image_id", "metric"])[columns].reset_index(drop=True)

    def metric_values(self, metric: str, model: str) -> pd.DataFrame:
        """image_id, value of one metric over one model's images (newest version), for
        sorting and filtering the gallery's model view."""
        sc, i, m = db.Score.__table__, db.Image.__table__, db.Model.__table__
        query = (
            select(sc.c.id, sc.c.image_id, sc.c.value)
            .join(i, i.c.id == sc.c.image_id)
            .join(m, m.c.id == i.c.model_id)
            .where(m.c.name == model, sc.c.metric == metric)
        )
        col = columnar.fetch_columns(self.engine, query.order_by(sc.c.id))
        frame = pd.DataFrame(
            {
                "image_id": columnar.ints(col["image_id"]),
                "value": np.array(col["value"], dtype=np.float64),  # NULL -> NaN
            }
        )
        frame = frame.drop_duplicates("image_id", keep="last")
        return frame.reset_index(drop=True)

    def model_image_ids(
        self,
        model: str,
        category: str | None = None,
        prompt_set: str | None = None,
        broken: bool | None = None,
    ) -> np.ndarray:
        """Ids of one model's images under the gallery's filters (column-wise: the model
        view sorts them, then reads one page with :meth:`gallery_images`)."""
        i, m, p = db.Image.__table__, db.Model.__table__, db.Prompt.__table__
        query = select(i.c.id).join(m, m.c.id == i.c.model_id).where(m.c.name == model)
        if category is not None or prompt_set is not None:
            query = query.join(p, p.c.id == i.c.prompt_id)
        if category is not None:
            query = query.where(p.c.category == category)
        if prompt_set is not None:
            query = query.where(p.c.prompt_set == prompt_set)
        if broken is not None:
            query = query.where(i.c.broken.is_not(None) if broken else i.c.broken.is_(None))
        return columnar.ints(columnar.fetch_columns(self.engine, query.order_by(i.c.id))["id"])

    def gallery_metrics(self) -> list[str]:
        """The per-image metrics with at least one score."""
        sc = db.Score.__table__
        with self.engine.connect() as conn:
            return sorted(r[0] for r in conn.execute(select(sc.c.metric).distinct()))

    def image_vote_counts(self, image_ids: Sequence[int]) -> pd.DataFrame:
        """Votes on each image: image_id, votes, wins, losses, ties, both_bad.

        Counted are the votes on normal battles (no gold checks) of raters that are not
        excluded and not judges; the votes of web raters still on probation are counted
        (they are stored and will count on the board). Read through the battles of the
        images' prompts (``ix_battles_prompt``), so the cost follows the votes on these
        prompts, not the arena's size.
        """
        columns = ["image_id", "votes", "wins", "losses", "ties", "both_bad"]
        ids = sorted({int(i) for i in image_ids})
        if not ids:
            return pd.DataFrame(columns=columns)
        v, b, i = db.Vote.__table__, db.Battle.__table__, db.Image.__table__
        rows = []
        with self.engine.connect() as conn:
            for chunk in _chunks(ids):
                prompts = select(i.c.prompt_id).where(i.c.id.in_(chunk)).distinct()
                query = (
                    select(b.c.left_image_id, b.c.right_image_id, v.c.outcome)
                    .select_from(v)
                    .join(b, b.c.id == v.c.battle_id)
                    .where(
                        b.c.prompt_id.in_(prompts),
                        or_(b.c.left_image_id.in_(chunk), b.c.right_image_id.in_(chunk)),
                    )
                )
                query = counted_votes(
                    query,
                    self.settings.probation_votes,
                    include_excluded=False,
                    include_probation=True,
                    include_gold=False,
                    include_judges=False,
                )
                rows += conn.execute(query).all()
        votes = pd.DataFrame(rows, columns=["left", "right", "outcome"])
        sides = pd.concat(
            [
                pd.DataFrame({"image_id": votes["left"], "won": votes["outcome"] == "left"}),
                pd.DataFrame({"image_id": votes["right"], "won": votes["outcome"] == "right"}),
            ]
        ).assign(
            lost=lambda d: ~d["won"] & np.tile(votes["outcome"].isin(["left", "right"]), 2),
            tie=np.tile(votes["outcome"] == "tie", 2),
            both_bad=np.tile(votes["outcome"] == "both_bad", 2),
        )
        sides = sides[sides["image_id"].isin(ids)]
        grouped = sides.groupby("image_id")
        out = pd.DataFrame(
            {
                "votes": grouped.size(),
                "wins": grouped["won"].sum(),
                "losses": grouped["lost"].sum(),
                "ties": grouped["tie"].sum(),
                "both_bad": grouped["both_bad"].sum(),
            }
        ).reindex(ids, fill_value=0)
        out = out.astype(np.int64).rename_axis("image_id").reset_index()
        return out[columns]

    def review_pool(self) -> pd.DataFrame:
        """image_id, model, prompt_id of every image the blind review may sample and failure
        rates are over: images of models (not reference sets) that are not broken, in id
        order. Read column-wise (160,000 images in well under a second)."""
        i, m = db.Image.__table__, db.Model.__table__
        with self.engine.connect() as conn:
            rows = conn.execute(select(m.c.id, m.c.name).where(m.c.kind != "reference"))
            models = {int(k): name for k, name in rows}
        # One plain scan; the models' filter and the order are done in numpy (an IN list
        # and ORDER BY made SQLite go through an index and sort: twice as slow).
        query = select(i.c.id, i.c.model_id, i.c.prompt_id).where(i.c.broken.is_(None))
        col = columnar.fetch_columns(self.engine, query)
        image_ids, model_ids = columnar.ints(col["id"]), columnar.ints(col["model_id"])
        prompt_ids = pd.array(col["prompt_id"], dtype="Int64")
        known = np.array(sorted(models), dtype=np.int64)
        names = np.array([models[k] for k in known.tolist()], dtype=object)
        at = columnar.positions(model_ids, known)
        keep = np.flatnonzero(at >= 0)
        keep = keep[np.argsort(image_ids[keep], kind="stable")]
        return pd.DataFrame(
            {
                "image_id": image_ids[keep],
                "model": pd.array(names[at[keep]], dtype="str"),
                "prompt_id": prompt_ids[keep],
            }
        )

    def reviewed_blind(self, reviewer: str) -> set[int]:
        """Images this reviewer already gave a blind verdict on."""
        f = db.ImageFlag.__table__
        query = select(f.c.image_id).where(
            and_(f.c.reviewer == check_reviewer(reviewer), f.c.blind.is_(True))
        )
        with self.engine.connect() as conn:
            return {row[0] for row in conn.execute(query)}

    def image_sha256(self, image_id: int) -> str | None:
        """The pixel hash (file name) of an image, None if there is no such image."""
        i = db.Image.__table__
        with self.engine.connect() as conn:
            return conn.scalar(select(i.c.sha256).where(i.c.id == int(image_id)))

    def images_signature(self) -> tuple:
        """Changes when images are added or marked broken (what failure rates are over)."""
        i = db.Image.__table__
        with self.engine.connect() as conn:
            row = conn.execute(
                select(func.count(i.c.id), func.max(i.c.id), func.count(i.c.broken))
            ).one()
        return tuple(row)
