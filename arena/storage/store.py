"""The storage façade: one object owns the database and the image files.

Everything outside this module speaks to storage through domain verbs
(``add_model``, ``add_prompts``, ``add_image``, ``votes_frame`` ...). Domain
modules with bigger transactions (battles, ingest, scoring) use
``store.session()``, which commits on success and rolls back on any error,
so a failed operation leaves nothing half-written.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from arena.config import Settings, load_settings
from arena.storage import columnar, db
from arena.storage.errors import StoreError
from arena.storage.gallery_verbs import GalleryVerbs
from arena.storage.images import ImageStore, StoredImage
from arena.storage.intake_verbs import IntakeVerbs
from arena.storage.migrate import SchemaError, upgrade_to_head
from arena.storage.prompt_set_verbs import PromptSetVerbs
from arena.storage.rater_verbs import RaterVerbs
from arena.storage.review_verbs import ReviewVerbs
from arena.storage.score_verbs import ScoreVerbs
from arena.storage.vocabulary import MODEL_KINDS
from arena.storage.vote_counts import VoteCountVerbs, counted_votes

T = TypeVar("T")


@dataclass(frozen=True)
class PromptRow:
    text: str
    external_id: str | None = None
    tags: str = ""
    category: str = ""


class Store(
    GalleryVerbs, IntakeVerbs, PromptSetVerbs, RaterVerbs, ReviewVerbs, ScoreVerbs, VoteCountVerbs
):
    """The workspace: its database and image files, spoken to through domain verbs.

    Verbs for importers live in ``intake_verbs``, for raters (ids, exclusions, bulk
    votes) in ``rater_verbs``, for scores and model-level metrics in ``score_verbs``,
    for votes counted per model pair in ``vote_counts``, for reviewers' flags in
    ``review_verbs`` and the gallery's reads in ``gallery_verbs``; the rest are here.
    """

    def __init__(self, settings: Settings | None = None, *, upgrade: bool = True):
        self.settings = settings or load_settings()
        self.workspace = self.settings.workspace_path
        self.url = self.settings.database_url
        self.engine = db.make_engine(self.url)
        self._sessions = db.make_sessionmaker(self.engine)
        sqlite = self.url.startswith("sqlite")
        self._write_lock = threading.Lock() if sqlite else nullcontext()
        self.images = ImageStore(self.workspace, self.settings.display_size)
        self._shared: dict[object, object] = {}
        self._shared_lock = threading.RLock()
        if upgrade:
            self._upgrade()

    def shared(self, key: object, make: Callable[[], T]) -> T:
        """The one object of this store under ``key`` (a report cache, the admission
        limits, the gold pool), made by ``make()`` on first use. Every app, tab and
        route on this store shares it; the lock makes concurrent first uses build one."""
        with self._shared_lock:
            if key not in self._shared:
                self._shared[key] = make()
            return self._shared[key]

    @classmethod
    def open(cls, workspace: str | Path | None = None, **overrides: Any) -> Store:
        """Open (and create or upgrade) the workspace at ``workspace``."""
        settings = load_settings(workspace=str(workspace) if workspace else None, **overrides)
        return cls(settings)

    def with_settings(self, **overrides: Any) -> Store:
        """Another Store on this workspace with some settings changed.

        A store's settings are the only ones its readers see (the web app, the
        services, battles), and they never change once it is open: to run with other
        settings, open the workspace again with them.
        """
        return type(self)(self.settings.replace(**overrides))

    # -- lifecycle ---------------------------------------------------------------
    def _upgrade(self) -> None:
        if self.url.startswith("sqlite"):
            try:
                self.workspace.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"workspace {self.workspace}: cannot create it ({exc.strerror}); choose a "
                    "writable folder with --workspace or ARENA_WORKSPACE."
                ) from None
            if not os.access(self.workspace, os.W_OK):
                raise StoreError(
                    f"workspace {self.workspace} is read-only; the arena must write its "
                    "database and images there. Fix the permissions or pick another folder "
                    "with --workspace or ARENA_WORKSPACE."
                )
        try:
            upgrade_to_head(self.engine)
        except SchemaError:
            raise
        except OperationalError as exc:
            raise StoreError(
                f"database {self.url}: cannot open or upgrade it ({exc.orig}). Check that "
                "the workspace is writable and the file is an arena database."
            ) from None

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: commit on success, roll back on any exception."""
        with self._sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def write_session(self) -> Iterator[Session]:
        """A transaction that writes; on SQLite, one such transaction per process at a time.

        SQLite has one writer at a time. A writer that finds the lock taken sleeps in
        SQLite's busy handler for 1, 2, 5 ... up to 100 ms between tries, however soon
        the lock is free again, so concurrent votes queued on the file lock wait in
        those steps (a long latency tail under load). Writers of one process queue on
        this Python lock instead and start the moment the previous one commits; other
        processes still meet at SQLite's lock. PostgreSQL needs no such lock.
        """
        with self._write_lock, self.session() as session:
            yield session

    # -- models ------------------------------------------------------------------
    def add_model(
        self,
        name: str,
        kind: str,
        source: str = "",
        params: dict | None = None,
        description: str = "",
    ) -> int:
        """Register a model; re-registering the same (name, kind, source) returns its id."""
        name = name.strip()
        if not name:
            raise StoreError("model name is empty; give a non-empty --model name.")
        if kind not in MODEL_KINDS:
            raise StoreError(f"model kind {kind!r} is not one of {MODEL_KINDS}.")
        with self.session() as s:
            existing = s.scalar(select(db.Model).where(db.Model.name == name))
            if existing is not None:
                if existing.kind != kind or (
                    source and existing.source and existing.source != source
                ):
                    raise StoreError(
                        f"model name {name!r} is already used by a {existing.kind} model from "
                        f"{existing.source or '(no source)'}; pick another name with --model, "
                        "or import into that model from the same source."
                    )
                return existing.id
            model = db.Model(
                name=name, kind=kind, source=source, params=params or {}, description=description
            )
            s.add(model)
            s.flush()
            return model.id

    def model_id(self, name: str) -> int:
        with self.session() as s:
            model_id = s.scalar(select(db.Model.id).where(db.Model.name == name))
        if model_id is None:
            raise StoreError(
                f"unknown model {name!r}; known models: {', '.join(self.model_names()) or 'none'}."
            )
        return model_id

    def set_model_active(self, name: str, active: bool) -> None:
        """Stop (or resume) serving a model's images in battles; its votes stay."""
        with self.session() as s:
            model = s.scalar(select(db.Model).where(db.Model.name == name))
            if model is None:
                raise StoreError(
                    f"unknown model {name!r}; known models: "
                    f"{', '.join(self.model_names()) or 'none'}."
                )
            model.active = active

    def model_names(self, include_reference: bool = False) -> list[str]:
        query = select(db.Model.name).order_by(db.Model.name)
        if not include_reference:
            query = query.where(db.Model.kind != "reference")
        with self.session() as s:
            return list(s.scalars(query))

    # -- prompts -----------------------------------------------------------------
    def add_prompts(self, rows: Iterable[PromptRow], prompt_set: str) -> tuple[int, int]:
        """Add prompts to a set in one transaction; returns (added, already present)."""
        rows = list(rows)
        with self.session() as s:
            existing = set(
                s.scalars(select(db.Prompt.external_id).where(db.Prompt.prompt_set == prompt_set))
            )
            count = len(existing)
            added = 0
            for row in rows:
                ext = row.external_id or str(count + added + 1)
                if ext in existing:
                    continue
                existing.add(ext)
                s.add(
                    db.Prompt(
                        prompt_set=prompt_set,
                        external_id=ext,
                        text=row.text,
                        tags=row.tags,
                        category=row.category,
                    )
                )
                added += 1
        return added, len(rows) - added

    def prompt_ids(self, prompt_set: str | None = None) -> dict[tuple[str, str], int]:
        """(prompt_set, external_id) -> prompt id."""
        query = select(db.Prompt.prompt_set, db.Prompt.external_id, db.Prompt.id)
        if prompt_set is not None:
            query = query.where(db.Prompt.prompt_set == prompt_set)
        with self.session() as s:
            return {(ps, ext): pid for ps, ext, pid in s.execute(query)}

    # -- images ------------------------------------------------------------------
    def add_image(
        self,
        model_id: int,
        prompt_id: int | None,
        stored: StoredImage,
        seed: int | None = None,
        params: dict | None = None,
        settings_hash: str = "",
        broken: str | None = None,
        source_name: str = "",
        session: Session | None = None,
    ) -> int | None:
        """Record a stored image; returns its id, or None when it is already recorded."""

        def insert(s: Session) -> int | None:
            dup = s.scalar(
                select(db.Image.id).where(
                    db.Image.model_id == model_id, db.Image.sha256 == stored.sha256
                )
            )
            if dup is not None:
                return None
            image = db.Image(
                sha256=stored.sha256,
                model_id=model_id,
                prompt_id=prompt_id,
                seed=seed,
                width=stored.width,
                height=stored.height,
                params=params or {},
                settings_hash=settings_hash,
                broken=broken,
                source_name=source_name,
            )
            s.add(image)
            s.flush()
            return image.id

        if session is not None:
            return insert(session)
        with self.session() as s:
            return insert(s)

    # -- secrets -----------------------------------------------------------------
    def server_secret(self, name: str) -> str:
        """A random 256-bit key (hex) shared by every server process, made on first use."""
        with self.session() as s:
            value = s.scalar(select(db.ServerSecret.value).where(db.ServerSecret.name == name))
        if value is not None:
            return value
        try:
            with self.write_session() as s:
                s.add(db.ServerSecret(name=name, value=secrets.token_hex(32)))
        except IntegrityError:  # another process made it first: use theirs
            pass
        with self.session() as s:
            return s.scalar(select(db.ServerSecret.value).where(db.ServerSecret.name == name))

    # -- frames ------------------------------------------------------------------
    def votes_frame(
        self, include_excluded: bool = False, include_gold: bool = False
    ) -> pd.DataFrame:
        """One row per vote: models, images, prompt, outcome, rater and times.

        Columns: vote_id, battle_id, created_at, outcome, decision_ms, flag, rater_id,
        rater_kind, rater_group (None: in no group), rater_excluded, policy, battle_kind,
        gold_answer, prompt_id, prompt_set, category, left_image_id, right_image_id,
        left_model, right_model, left_sha256, right_sha256,
        client_group (the battle's keyed address-group hash; None where not recorded).
        Read column-wise (:func:`arena.storage.columnar.read_votes`): the votes-battles join from
        the database, names and hashes from the small tables by id. Without
        ``include_excluded``, the votes of excluded raters and of raters the web app
        created that are still in probation (fewer than ``probation_votes`` votes) are
        left out (:func:`arena.storage.vote_counts.counted_votes`).
        """
        v, b = db.Vote.__table__, db.Battle.__table__
        query = select(
            v.c.id.label("vote_id"),
            v.c.battle_id,
            v.c.created_at,
            v.c.outcome,
            v.c.decision_ms,
            v.c.flag,
            v.c.rater_id,
            b.c.policy,
            b.c.kind.label("battle_kind"),
            b.c.gold_answer,
            b.c.prompt_id,
            b.c.left_image_id,
            b.c.right_image_id,
            b.c.client_group,
        ).join(b, b.c.id == v.c.battle_id)
        query = counted_votes(
            query,
            self.settings.probation_votes,
            include_excluded=include_excluded,
            include_probation=include_excluded,
            include_gold=include_gold,
        )
        return columnar.read_votes(self.engine, query)

    def models_frame(self, session: Session | None = None) -> pd.DataFrame:
        """One row per model (reference sets too), by name: model, kind, active, images."""
        query = (
            select(db.Model.name, db.Model.kind, db.Model.active, func.count(db.Image.id))
            .outerjoin(db.Image, db.Image.model_id == db.Model.id)
            .group_by(db.Model.id)
            .order_by(db.Model.name)
        )
        with nullcontext(session) if session is not None else self.session() as s:
            rows = s.execute(query).all()
        return pd.DataFrame(rows, columns=["model", "kind", "active", "images"])

    def images_frame(self, include_broken: bool = False) -> pd.DataFrame:
        """One row per image: image_id, sha256, model, model_kind, prompt_id, seed, size."""
        i, m = db.Image.__table__, db.Model.__table__
        query = (
            select(
                i.c.id.label("image_id"),
                i.c.sha256,
                m.c.name.label("model"),
                m.c.kind.label("model_kind"),
                i.c.prompt_id,
                i.c.seed,
                i.c.width,
                i.c.height,
                i.c.broken,
            )
            .join(m, m.c.id == i.c.model_id)
            .order_by(i.c.id)
        )
        if not include_broken:
            query = query.where(i.c.broken.is_(None))
        with self.engine.connect() as conn:
            return pd.read_sql(query, conn)

    def prompts_frame(self) -> pd.DataFrame:
        """One row per prompt: prompt_id, prompt_set, external_id, text, tags, category,
        held_out (its set is held out: ``set_held_out``)."""
        p, ps = db.Prompt.__table__, db.PromptSet.__table__
        query = (
            select(
                p.c.id.label("prompt_id"),
                p.c.prompt_set,
                p.c.external_id,
                p.c.text,
                p.c.tags,
                p.c.category,
                ps.c.held_out,
            )
            .select_from(p.outerjoin(ps, ps.c.name == p.c.prompt_set))
            .order_by(p.c.id)
        )
        with self.engine.connect() as conn:
            frame = pd.read_sql(query, conn)
        frame["held_out"] = frame["held_out"].fillna(False).astype(bool)
        return frame

    # -- what reports are computed from ---------------------------------------------
    def data_signature(self) -> tuple:
        """Changes whenever votes, rater exclusions or groups, scores, model-level
        metrics or held-out prompt sets change.

        Six aggregate queries and no frame: report caches (arena.reports.service) key
        on it, so a page load recomputes only when something a report counts changed.
        """
        v, r, sc = db.Vote.__table__, db.Rater.__table__, db.Score.__table__
        mm, ps = db.ModelMetric.__table__, db.PromptSet.__table__
        with self.engine.connect() as conn:
            votes = conn.execute(select(func.count(v.c.id), func.max(v.c.id))).one()
            excluded = conn.execute(
                select(func.count(r.c.id), func.coalesce(func.sum(r.c.id), 0)).where(
                    r.c.excluded.is_(True)
                )
            ).one()
            scores = conn.execute(select(func.count(sc.c.id), func.max(sc.c.id))).one()
            model_level = conn.execute(
                select(func.count(mm.c.id), func.max(mm.c.computed_at))
            ).one()
            # A set marked or unmarked held out changes what the held-out filter keeps.
            held_out = conn.execute(select(func.count(ps.c.name), func.max(ps.c.updated_at))).one()
            # Rater groups (a few rows): moving a rater changes its old and new group's sums.
            groups = conn.execute(
                select(r.c.rater_group, func.count(r.c.id), func.sum(r.c.id))
                .where(r.c.rater_group.is_not(None))
                .group_by(r.c.rater_group)
                .order_by(r.c.rater_group)
            ).all()
        return (
            tuple(votes),
            tuple(excluded),
            tuple(scores),
            tuple(model_level),
            tuple(tuple(g) for g in groups),
            tuple(held_out),
        )

    def web_rater_ids(self) -> set[int]:
        """Ids of the raters the web app created (``db.web_raters``): those on probation."""
        r = db.Rater.__table__
        with self.engine.connect() as conn:
            return {row[0] for row in conn.execute(select(r.c.id).where(db.web_raters(r)))}

    # -- status ------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Counts for `arena status`: per model images/votes, and totals."""
        with self.session() as s:
            counts = {
                "models": s.scalar(
                    select(func.count(db.Model.id)).where(db.Model.kind != "reference")
                ),
                "prompts": s.scalar(select(func.count(db.Prompt.id))),
                "prompt_sets": s.scalar(select(func.count(func.distinct(db.Prompt.prompt_set)))),
                "held_out_sets": sorted(
                    s.scalars(select(db.PromptSet.name).where(db.PromptSet.held_out.is_(True)))
                ),
                "images": s.scalar(select(func.count(db.Image.id))),
                "broken_images": s.scalar(
                    select(func.count(db.Image.id)).where(db.Image.broken.is_not(None))
                ),
                "raters": s.scalar(select(func.count(db.Rater.id))),
                "battles": s.scalar(select(func.count(db.Battle.id))),
                "votes": s.scalar(select(func.count(db.Vote.id))),
                "scores": s.scalar(select(func.count(db.Score.id))),
            }
            models = self.models_frame(session=s)
            metrics = s.execute(
                select(db.Score.metric, db.Score.version, func.count(db.Score.id))
                .group_by(db.Score.metric, db.Score.version)
                .order_by(db.Score.metric)
            ).all()
        counts["per_model"] = [
            {"model": row.model, "kind": row.kind, "images": int(row.images)}
            for row in models.itertuples()
        ]
        counts["metrics"] = [{"metric": m, "version": ver, "scores": n} for m, ver, n in metrics]
        counts["workspace"] = str(self.workspace)
        counts["database"] = self.engine.url.render_as_string(hide_password=True)
        return counts
