"""What the scoring jobs write and the reports read: per-image scores, model-level metrics.

A mixin of :class:`arena.storage.store.Store`. Per-image scores are written by the
scoring runner (``scoring.metrics.runner``) in its own transactions; model-level
numbers (KID, FID, CMMD, FD-DINO, diversity, AS) through ``put_model_metric``. Each
row keeps its metric's direction (``higher_is_better``), so readers orient it without
the scoring registry.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from sqlalchemy import select

from arena.storage import columnar, db


class ScoreVerbs:
    """Store verbs for scores and model-level metrics; ``self`` is the Store."""

    def put_model_metric(
        self,
        model_id: int,
        metric: str,
        reference: str,
        value: float | None,
        std: float | None = None,
        n: int = 0,
        details: dict | None = None,
        *,
        higher_is_better: bool,
        slice: str = "",
    ) -> None:
        """Store (or replace) one model-level number against a reference set ("" for none).

        ``higher_is_better`` is the metric's direction (False for FID), kept beside the
        number so that readers orient it without the scoring registry. ``slice`` names
        the images it is over: "" all the model's images, ``category=<name>`` or
        ``prompt_set=<name>`` those of one prompt category or set (its own row: a
        per-slice number never replaces the whole-model one).
        """
        with self.session() as s:
            row = s.scalar(
                select(db.ModelMetric).where(
                    db.ModelMetric.model_id == model_id,
                    db.ModelMetric.metric == metric,
                    db.ModelMetric.reference == reference,
                    db.ModelMetric.slice == slice,
                )
            )
            if row is None:
                row = db.ModelMetric(
                    model_id=model_id, metric=metric, reference=reference, slice=slice
                )
                s.add(row)
            row.value, row.std, row.n, row.details = value, std, n, details
            row.higher_is_better = bool(higher_is_better)
            row.computed_at = db.utcnow()

    def model_metrics_frame(self, reference: str | None = None) -> pd.DataFrame:
        """One row per (model, metric, reference, slice): model, model_kind, metric,
        reference, slice ("" for all the model's images, else ``category=<name>`` or
        ``prompt_set=<name>``), value, std, n, warning (the sample-size and image-size
        warnings, "" if none), higher_is_better, computed_at, details.

        ``reference`` keeps only numbers computed against that reference set (and the
        reference-free ones such as diversity, whose reference is "").
        """
        mm, m = db.ModelMetric.__table__, db.Model.__table__
        query = (
            select(
                m.c.name.label("model"),
                m.c.kind.label("model_kind"),
                mm.c.metric,
                mm.c.reference,
                mm.c.slice,
                mm.c.value,
                mm.c.std,
                mm.c.n,
                mm.c.higher_is_better,
                mm.c.details,
                mm.c.computed_at,
            )
            .join(m, m.c.id == mm.c.model_id)
            .order_by(m.c.name, mm.c.metric, mm.c.reference, mm.c.slice)
        )
        if reference is not None:
            query = query.where(mm.c.reference.in_([reference, ""]))
        with self.engine.connect() as conn:
            frame = pd.read_sql(query, conn)
        frame["details"] = [d if isinstance(d, dict) else {} for d in frame["details"]]
        frame["warning"] = [str(d.get("warning", "")) for d in frame["details"]]
        columns = [
            "model",
            "model_kind",
            "metric",
            "reference",
            "slice",
            "value",
            "std",
            "n",
            "warning",
        ]
        frame["higher_is_better"] = frame["higher_is_better"].astype(bool)
        return frame[[*columns, "higher_is_better", "computed_at", "details"]]

    def scores_frame(self, metrics: Iterable[str] | None = None) -> pd.DataFrame:
        """One row per (image, metric): image_id, metric, version, value, higher_is_better."""
        sc = db.Score.__table__
        query = select(sc.c.image_id, sc.c.metric, sc.c.version, sc.c.value, sc.c.higher_is_better)
        if metrics is not None:
            query = query.where(sc.c.metric.in_(list(metrics)))
        col = columnar.fetch_columns(self.engine, query.order_by(sc.c.image_id, sc.c.metric))
        if not len(col["image_id"]):
            return columnar.empty_frame(col)
        return pd.DataFrame(
            {
                "image_id": columnar.ints(col["image_id"]),
                "metric": columnar.strings(col["metric"]),
                "version": columnar.strings(col["version"]),
                "value": columnar.inferred(col["value"]),
                "higher_is_better": columnar.bools(col["higher_is_better"]),
            }
        )

    def score_details_frame(self, metrics: Iterable[str] | None = None) -> pd.DataFrame:
        """One row per score that stores details (the tags metric's per-tag hits, the
        anomaly score's points, ...): image_id, metric, version, details (a dict).

        Rows without details are left out; ``metrics`` restricts to those metrics.
        """
        sc = db.Score.__table__
        query = select(sc.c.image_id, sc.c.metric, sc.c.version, sc.c.details).where(
            sc.c.details.is_not(None)
        )
        if metrics is not None:
            query = query.where(sc.c.metric.in_(list(metrics)))
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(sc.c.image_id, sc.c.metric, sc.c.version)).all()
        frame = pd.DataFrame(rows, columns=["image_id", "metric", "version", "details"])
        keep = np.fromiter((isinstance(d, dict) for d in frame["details"]), bool, len(frame))
        return frame[keep].reset_index(drop=True).astype({"image_id": "int64"})
