"""The gallery's reads: images of a prompt or a model with their prompt, scores, votes.

A mixin of :class:`arena.storage.store.Store`, beside the reviewers' verdicts
(:mod:`arena.storage.review_verbs`). Each read is a few indexed queries -- the images of
one (prompt, seed) through ``ix_images_prompt_seed``, the battles of their prompt through
``ix_battles_prompt``, scores by image -- or one column-wise scan (a model's image ids,
the review pool), so a view of one prompt stays fast on a workspace of any size
(``benchmarks/gallery.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from sqlalchemy import false, func, or_, select

from arena.storage import columnar, db
from arena.storage.vote_counts import counted_votes

#: Ids per ``IN (...)`` list: well under every back end's limit on bound parameters.
CHUNK = 5000
#: ``seed`` of :meth:`GalleryVerbs.gallery_images` when any seed will do.
ANY_SEED = object()


def chunks(ids: Sequence[int]) -> Iterable[list[int]]:
    ids = [int(i) for i in ids]
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


def read_parts(conn, query, column, ids: Sequence[int] | None) -> pd.DataFrame:
    """``query`` read as one frame; with ``ids``, only rows whose ``column`` is one of
    them, read in chunks of ``IN`` lists (no ids: the query's empty frame)."""
    if ids is None:
        return pd.read_sql(query, conn)
    parts = [pd.read_sql(query.where(column.in_(chunk)), conn) for chunk in chunks(ids)]
    if not parts:
        return pd.read_sql(query.where(false()), conn)
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]


class GalleryVerbs:
    """Store verbs the gallery reads with; ``self`` is the Store."""

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
            frame = read_parts(conn, query, i.c.id, image_ids)
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
            for chunk in chunks(image_ids):
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

    def has_metric(self, metric: str) -> bool:
        """Whether any image has a score of ``metric`` (one index lookup)."""
        sc = db.Score.__table__
        with self.engine.connect() as conn:
            return conn.scalar(select(sc.c.id).where(sc.c.metric == metric).limit(1)) is not None

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
            for chunk in chunks(ids):
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
