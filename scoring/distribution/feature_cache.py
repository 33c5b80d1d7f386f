"""The feature cache: one float32 vector per (image, extractor key), computed once.

``cached_features`` is what `arena distribution` reads features through: stored
vectors come back from the ``features`` table, missing ones are decoded, extracted in
batches and committed per batch (an interrupted run keeps what it finished). Under a
launcher (``scoring.sharding``) each rank extracts its batches of the missing images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from scoring.distribution.features import Extractor, Head
from scoring.sharding import Ranks, TotalBar, bar_label


def load_cached(store, extractor_key: str, image_ids: Sequence[int]) -> dict[int, np.ndarray]:
    """Stored vectors of ``image_ids`` under ``extractor_key`` (image id -> float32 vector)."""
    from sqlalchemy import select

    from arena.storage import db

    found: dict[int, np.ndarray] = {}
    ids = list(image_ids)
    with store.session() as s:
        for start in range(0, len(ids), 5000):
            chunk = ids[start : start + 5000]
            rows = s.execute(
                select(db.Feature.image_id, db.Feature.dim, db.Feature.vector).where(
                    db.Feature.extractor == extractor_key, db.Feature.image_id.in_(chunk)
                )
            )
            for image_id, dim, blob in rows:
                vec = np.frombuffer(blob, dtype=np.float32)
                if vec.shape != (dim,):
                    continue  # a damaged row: recomputed and replaced
                found[image_id] = vec
    return found


def write_features(
    store, extractor_key: str, image_ids: Sequence[int], vectors, replace: bool = True
) -> None:
    """Insert rows in one transaction, replacing any damaged row and ignoring duplicates.

    ``replace=False`` keeps rows already stored (the other outputs of a forward pass,
    written beside the ones asked for: vectors other numbers were computed from stay).
    """
    from sqlalchemy import delete

    from arena.storage import db

    dialect = store.engine.dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:  # pragma: no cover
        from sqlalchemy import insert
    statement = insert(db.Feature)
    if dialect in ("sqlite", "postgresql"):
        statement = statement.on_conflict_do_nothing(index_elements=["image_id", "extractor"])
    now = db.utcnow()
    rows = [
        {
            "image_id": int(i),
            "extractor": extractor_key,
            "dim": int(v.shape[0]),
            "vector": np.ascontiguousarray(v, dtype=np.float32).tobytes(),
            "created_at": now,
        }
        for i, v in zip(image_ids, vectors, strict=True)
    ]
    with store.session() as s:
        if replace:
            s.execute(
                delete(db.Feature).where(
                    db.Feature.extractor == extractor_key,
                    db.Feature.image_id.in_([r["image_id"] for r in rows]),
                )
            )
        s.execute(statement, rows)


def cached_features(
    store,
    extractor: Extractor | Head,
    image_ids: Sequence[int],
    batch_size: int = 32,
    num_workers: int = 0,
    progress: bool = False,
    ranks: Ranks | None = None,
) -> np.ndarray:
    """(len(image_ids), dim) features, computing and storing only the missing ones.

    Missing images are decoded and preprocessed by the scoring runner's DataLoader
    dataset (worker processes when ``num_workers > 0``), extracted in batches and
    committed per batch, so an interrupted run keeps what it finished. Inception
    (``own_size``) gets them by (height, width), so a batch is mostly one shape: one
    forward pass per batch, not per image; the result keeps ``image_ids``' order. An
    image that cannot be decoded raises an error naming it (a distribution over a
    silently shrunken set would be wrong).

    With several ``ranks`` the missing images are cut into the batches one process
    would make and each rank extracts every N-th batch, then waits for the others and
    reads their vectors: every rank returns the whole array.

    ``extractor`` may be a head (``Extractor.head``, e.g. Inception's logits): the
    owning network runs and every output of each pass is stored, each under its own
    key (keeping rows already there), so asking for the other output of the same
    images later extracts nothing.
    """
    from sqlalchemy import select

    from arena.storage import db

    ranks = ranks or Ranks()
    ids = [int(i) for i in image_ids]
    ranks.barrier()  # nothing of an earlier stage is still being written
    have = load_cached(store, extractor.key, ids)
    missing = [i for i in ids if i not in have]
    ranks.barrier()  # every rank has listed the same missing images before any writes
    if missing:
        with store.session() as s:
            columns = (db.Image.id, db.Image.sha256, db.Image.height, db.Image.width)
            found = s.execute(select(*columns).where(db.Image.id.in_(missing))).all()
        sha = {i: digest for i, digest, _h, _w in found}
        unknown = [i for i in missing if i not in sha]
        if unknown:
            raise ValueError(f"image ids {unknown[:10]} are not in the workspace.")
        if extractor.own_size:  # stable: equal sizes keep the caller's order
            size = {i: (h, w) for i, _d, h, w in found}
            missing.sort(key=size.__getitem__)
        cut = [missing[k : k + batch_size] for k in range(0, len(missing), batch_size)]
        mine = [i for part in ranks.deal(cut) for i in part]
        total = TotalBar(
            ranks,
            len(missing),
            lambda: _count_features(store, extractor.key),
            f"features {extractor.name}",
            enabled=progress,
        )
        try:
            _extract_missing(store, extractor, mine, sha, batch_size, num_workers, progress, have,
                             ranks, total)  # fmt: skip
        finally:
            total.close()
        if ranks.world > 1:  # the other ranks' batches, once they are stored
            ranks.barrier()
            have.update(load_cached(store, extractor.key, [i for i in missing if i not in have]))
    if not ids:
        return np.zeros((0, extractor.dim), dtype=np.float32)
    return np.stack([have[i] for i in ids]).astype(np.float32, copy=False)


def _count_features(store, extractor_key: str) -> int:
    from sqlalchemy import func, select

    from arena.storage import db

    with store.session() as s:
        query = select(func.count(db.Feature.id)).where(db.Feature.extractor == extractor_key)
        return int(s.scalar(query) or 0)


def _extract_missing(
    store, extractor, missing, sha, batch_size, num_workers, progress, have, ranks, total
):
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from scoring.metrics.runner import ImageDataset, WorkItem, collate

    items = [
        WorkItem(i, sha[i], str(store.images.path_for(sha[i])), None, (extractor.name,))
        for i in missing
    ]
    loader = DataLoader(
        ImageDataset(items, [_AsMetric(extractor)]),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate,
    )
    bar = tqdm(
        total=len(items),
        unit="img",
        desc=bar_label(ranks, f"features {extractor.name}"),
        disable=not progress,
        position=ranks.local_rank,
    )
    try:
        for batch in loader:
            if batch.failed:
                item, err = batch.failed[0]
                raise ValueError(
                    f"image {item.image_id} ({item.path}) cannot be read for features: {err}. "
                    "Re-import it or mark it broken."
                )
            positions, inputs = batch.inputs[extractor.preprocess_key]
            outputs = extractor.source.extract_outputs(inputs)
            vectors = outputs[extractor.key]
            batch_ids = [batch.items[p].image_id for p in positions]
            write_features(store, extractor.key, batch_ids, vectors)
            for key, other in outputs.items():  # the pass's other outputs, beside
                if key != extractor.key:
                    write_features(store, key, batch_ids, other, replace=False)
            have.update(zip(batch_ids, vectors, strict=True))
            bar.update(len(batch_ids))
            total.refresh()
    finally:
        bar.close()


class _AsMetric:
    """The two attributes the runner's ImageDataset reads from a metric."""

    def __init__(self, extractor: Extractor):
        self.name = extractor.name
        self.preprocess_key = extractor.preprocess_key
        self._fn = extractor.preprocessor()

    def preprocessor(self):
        return self._fn
