"""What importers write: prompt files into a set, stored images into a model.

A mixin of :class:`arena.storage.store.Store`. The importers (``arena.intake``, the
offline demo) decide what a clash means for their report; the store decides, in one
transaction per call, what is already there.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import insert, select
from sqlalchemy.exc import OperationalError

from arena.storage import db
from arena.storage.errors import StoreWriteError
from arena.storage.prompt_set_verbs import mark_held_out

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from arena.storage.store import PromptRow


@dataclass(frozen=True)
class NewImage:
    """A stored image file to record for a model (imported, not generated: no settings hash)."""

    sha256: str
    width: int
    height: int
    prompt_id: int | None = None
    seed: int | None = None
    params: dict = field(default_factory=dict)
    broken: str | None = None
    source_name: str = ""


@dataclass(frozen=True)
class Clash:
    """Why an image was not recorded: the model already has its pixels (``kind="pixels"``)
    or another image for its prompt and seed (``kind="seed"``); the rest describes the
    image it has."""

    kind: str
    prompt_id: int | None
    seed: int | None
    source_name: str


class IntakeVerbs:
    """Store verbs for importers; ``self`` is the Store."""

    def merge_prompts(
        self, prompt_set: str, rows: Sequence[PromptRow], held_out: bool | None = None
    ) -> dict[str, str]:
        """Add the rows whose external id is new to ``prompt_set``, in one transaction.

        Every row must carry its external id. Returns ``{external id: stored text}``
        for the rows whose id the set already had (those rows are not written), so the
        importer can tell an unchanged prompt from a changed one. ``held_out`` True or
        False marks or unmarks the set held out in the same transaction (None: as it is).
        """
        with self.session() as s:
            existing = dict(
                s.execute(
                    select(db.Prompt.external_id, db.Prompt.text).where(
                        db.Prompt.prompt_set == prompt_set
                    )
                ).all()
            )
            new = [
                {
                    "prompt_set": prompt_set,
                    "external_id": row.external_id,
                    "text": row.text,
                    "tags": row.tags,
                    "category": row.category,
                }
                for row in rows
                if row.external_id not in existing
            ]
            if new:
                s.execute(insert(db.Prompt), new)
            if held_out is not None:
                mark_held_out(s, prompt_set, held_out)
        return {r.external_id: existing[r.external_id] for r in rows if r.external_id in existing}

    def add_images(self, model_id: int, images: Sequence[NewImage]) -> list[Clash | None]:
        """Record ``images`` for a model in one transaction; one answer per image, in order.

        ``None``: recorded. A :class:`Clash`: not recorded, because the model already has
        these pixels, or (for an image with a seed) another image for the same prompt and
        seed; earlier images of the same call count. A database that refuses the write
        raises :class:`StoreWriteError` and nothing of the call is recorded.
        """
        if not images:
            return []
        img = db.Image
        shas = list({i.sha256 for i in images})
        pids = list({i.prompt_id for i in images if i.prompt_id is not None})
        with self._writing() as s:
            by_sha = {
                sha: Clash("pixels", pid, seed, src)
                for sha, pid, seed, src in s.execute(
                    select(img.sha256, img.prompt_id, img.seed, img.source_name).where(
                        img.model_id == model_id, img.sha256.in_(shas)
                    )
                )
            }
            by_key = {
                (pid, seed): Clash("seed", pid, seed, src)
                for pid, seed, src in s.execute(
                    select(img.prompt_id, img.seed, img.source_name).where(
                        img.model_id == model_id,
                        img.prompt_id.in_(pids),
                        img.seed.is_not(None),
                        img.settings_hash == "",
                    )
                )
            }
            answers: list[Clash | None] = []
            rows = []
            for image in images:
                key = (image.prompt_id, image.seed)
                clash = by_sha.get(image.sha256)
                if clash is None and image.seed is not None:
                    clash = by_key.get(key)
                answers.append(clash)
                if clash is not None:
                    continue
                by_sha[image.sha256] = Clash(
                    "pixels", image.prompt_id, image.seed, image.source_name
                )
                if image.seed is not None:
                    by_key[key] = Clash("seed", image.prompt_id, image.seed, image.source_name)
                rows.append(
                    {
                        "sha256": image.sha256,
                        "model_id": model_id,
                        "prompt_id": image.prompt_id,
                        "seed": image.seed,
                        "width": image.width,
                        "height": image.height,
                        "settings_hash": "",
                        "params": image.params,
                        "broken": image.broken,
                        "source_name": image.source_name,
                        "created_at": db.utcnow(),
                    }
                )
            if rows:
                s.execute(insert(db.Image), rows)
        return answers

    @contextmanager
    def _writing(self) -> Iterator[Session]:
        """A transaction whose refusal by the database is a StoreWriteError."""
        try:
            with self.session() as s:
                yield s
        except OperationalError as exc:
            raise StoreWriteError(self.url, str(exc.orig)) from None
