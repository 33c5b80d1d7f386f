"""Which pair of images a rater sees next.

Two layers:

* A **pairing policy** (:class:`PairingPolicy`) decides *which model pair*
  deserves the next vote. It is a small object with a ``name`` and
  ``probabilities(stats) -> array`` over the unordered model pairs ``a < b``
  (:func:`arena.stats.pairs.pair_index` order), given
  ``PairStats`` (votes so far, battles pending, which pairs can be served).
  ``uniform`` and ``balanced`` live here; more policies register themselves
  with ``register_policy(name, factory)`` where ``factory(store)`` builds
  the policy (so a policy may read what it needs: ratings, ``store.settings``).
* The **matchmaker** turns a model pair into a concrete battle: a random prompt
  both models have images for, a random (non-broken) image of each, random
  left/right, never an image pair this rater was already shown. It keeps the
  candidate images in memory (``CandidateIndex``: per model, its prompts and
  their images, as sorted numpy arrays), so choosing never scans the images
  table; the index is rebuilt when the images or models change (a cheap
  signature query at most every ``refresh_seconds``, or ``invalidate()``).

Randomness comes only from the ``numpy.random.Generator`` handed to the
matchmaker (seeded from the ``seed`` setting); there is no module-level RNG.
Models of kind ``reference`` (real reference images) and inactive models are
never served; images with ``broken`` set are never served.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Integer, func, select

from arena.stats.pairs import pair_index
from arena.storage import db
from arena.storage.renditions import complete_renditions

log = logging.getLogger(__name__)


class NoPairAvailable(RuntimeError):
    """No battle can be served (too few models with shared prompts, or all pairs seen)."""


# -- pairs and statistics ---------------------------------------------------------------
@dataclass(frozen=True)
class PairStats:
    """What a policy sees. Matrices are symmetric ``(n, n)`` over ``model_ids`` order."""

    model_ids: tuple[int, ...]
    model_names: tuple[str, ...]
    votes: np.ndarray  # votes stored per pair (normal battles)
    pending: np.ndarray  # battles served recently and not yet voted on
    available: np.ndarray  # bool: the pair has at least one shared prompt with images


class PairingPolicy:
    """Which model pair gets the next vote: ``probabilities`` returns one weight per
    unordered pair (sums to 1). Not to be confused with the rater-exclusion policy
    (``arena.voting.exclusion``)."""

    name = "policy"

    def probabilities(self, stats: PairStats) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


class UniformPolicy(PairingPolicy):
    """Every servable model pair equally likely."""

    name = "uniform"

    def probabilities(self, stats: PairStats) -> np.ndarray:
        rows, cols = pair_index(len(stats.model_ids))
        ok = stats.available[rows, cols].astype(float)
        return ok / ok.sum()


class BalancedPolicy(PairingPolicy):
    """The servable pairs with the fewest votes (stored + pending) so far, equally likely.

    Counting pending battles (served, not yet voted, younger than the matchmaker's
    ``pending_seconds``) keeps many concurrent raters from all landing on the same
    least-voted pair.
    """

    name = "balanced"

    def probabilities(self, stats: PairStats) -> np.ndarray:
        rows, cols = pair_index(len(stats.model_ids))
        ok = stats.available[rows, cols]
        load = (stats.votes + stats.pending)[rows, cols].astype(float)
        load[~ok] = np.inf
        best = ok & (load == load.min())
        return best / best.sum()


PairingPolicyFactory = Callable[..., PairingPolicy]
POLICIES: dict[str, PairingPolicyFactory] = {
    "uniform": lambda store=None: UniformPolicy(),
    "balanced": lambda store=None: BalancedPolicy(),
}


def register_policy(name: str, factory: PairingPolicyFactory) -> None:
    """Add a policy: ``factory(store)`` returns an object with ``probabilities``."""
    POLICIES[name] = factory


# Modules that call ``register_policy`` when imported (imported on first use, so that a
# policy with heavier needs costs nothing until it is chosen). Add one line per module.
POLICY_MODULES: tuple[str, ...] = ("arena.voting.active_pairing",)


def make_policy(name: str, store=None) -> PairingPolicy:
    """The policy called ``name`` (the ``matchmaking_policy`` setting)."""
    if name not in POLICIES:
        for module in POLICY_MODULES:
            importlib.import_module(module)
    try:
        factory = POLICIES[name]
    except KeyError:
        raise ValueError(
            f"matchmaking policy {name!r} is not known; use one of {', '.join(sorted(POLICIES))} "
            "(setting matchmaking_policy / ARENA_MATCHMAKING_POLICY)."
        ) from None
    return factory(store)


# -- the candidate index ----------------------------------------------------------------
@dataclass(frozen=True)
class ModelImages:
    """One model's servable images sorted by prompt: ``images[starts[k]:starts[k+1]]``
    are the images for ``prompts[k]``."""

    prompts: np.ndarray
    starts: np.ndarray
    images: np.ndarray

    def images_for(self, prompt_id: int) -> np.ndarray:
        k = int(np.searchsorted(self.prompts, prompt_id))
        return self.images[self.starts[k] : self.starts[k + 1]]

    def counts_for(self, prompt_ids: np.ndarray) -> np.ndarray:
        k = np.searchsorted(self.prompts, prompt_ids)
        return self.starts[k + 1] - self.starts[k]


class CandidateIndex:
    """Servable images per model, and the prompts each model pair shares (computed once)."""

    def __init__(
        self,
        model_ids: np.ndarray,
        model_names: list[str],
        image_ids: np.ndarray,
        image_models: np.ndarray,
        image_prompts: np.ndarray,
    ):
        order = np.lexsort((image_ids, image_prompts, image_models))
        image_ids, image_models, image_prompts = (
            image_ids[order],
            image_models[order],
            image_prompts[order],
        )
        self.model_ids = np.asarray(model_ids, dtype=np.int64)
        self.model_names = list(model_names)
        self.per_model: list[ModelImages] = []
        for mid in self.model_ids:
            lo, hi = np.searchsorted(image_models, [mid, mid + 1])
            prompts = image_prompts[lo:hi]
            uniq, starts = np.unique(prompts, return_index=True)
            self.per_model.append(
                ModelImages(uniq, np.append(starts, hi - lo).astype(np.int64), image_ids[lo:hi])
            )
        n = len(self.model_ids)
        self.shared: dict[tuple[int, int], np.ndarray] = {}
        self.available = np.zeros((n, n), dtype=bool)
        for a, b in zip(*pair_index(n), strict=True):
            common = np.intersect1d(
                self.per_model[a].prompts, self.per_model[b].prompts, assume_unique=True
            )
            self.shared[(int(a), int(b))] = common
            self.available[a, b] = self.available[b, a] = len(common) > 0
        # image id -> model position, for vote bookkeeping
        self.image_ids = image_ids
        self.image_model_pos = np.searchsorted(self.model_ids, image_models)
        by_id = np.argsort(image_ids)
        self._sorted_ids = image_ids[by_id]
        self._sorted_pos = self.image_model_pos[by_id]

    @property
    def n_models(self) -> int:
        return len(self.model_ids)

    def model_position(self, image_id: int) -> int | None:
        k = int(np.searchsorted(self._sorted_ids, image_id))
        if k < len(self._sorted_ids) and self._sorted_ids[k] == image_id:
            return int(self._sorted_pos[k])
        return None

    def all_image_pairs(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every (prompt, image of a, image of b) combination for pair (a, b), as arrays."""
        prompts_out, left, right = [], [], []
        for p in self.shared[(a, b)]:
            ia, ib = self.per_model[a].images_for(p), self.per_model[b].images_for(p)
            grid_a, grid_b = np.meshgrid(ia, ib, indexing="ij")
            left.append(grid_a.ravel())
            right.append(grid_b.ravel())
            prompts_out.append(np.full(grid_a.size, p))
        if not left:
            empty = np.array([], dtype=np.int64)
            return empty, empty, empty
        return np.concatenate(prompts_out), np.concatenate(left), np.concatenate(right)


def load_index(store) -> CandidateIndex:
    """Build the index from the database: active non-reference models, non-broken images."""
    m, i = db.Model.__table__, db.Image.__table__
    model_query = (
        select(m.c.id, m.c.name)
        .where(m.c.kind != "reference", m.c.active.is_(True))
        .order_by(m.c.id)
    )
    image_query = (
        select(i.c.id, i.c.model_id, i.c.prompt_id)
        .join(m, m.c.id == i.c.model_id)
        .where(
            i.c.broken.is_(None),
            i.c.prompt_id.is_not(None),
            m.c.kind != "reference",
            m.c.active.is_(True),
        )
    )
    with store.engine.connect() as conn:
        models = conn.execute(model_query).all()
        # plain tuples: numpy over SQLAlchemy Row objects is ~50x slower
        rows = np.array(
            [tuple(r) for r in conn.execute(image_query).tuples()], dtype=np.int64
        ).reshape(-1, 3)
    return CandidateIndex(
        np.array([r[0] for r in models], dtype=np.int64),
        [r[1] for r in models],
        rows[:, 0],
        rows[:, 1],
        rows[:, 2],
    )


def index_signature(store) -> tuple:
    """Changes whenever a model or a servable image is added, (de)activated or broken."""
    m, i = db.Model.__table__, db.Image.__table__
    with store.engine.connect() as conn:
        models = conn.execute(
            select(
                func.count(m.c.id),
                func.max(m.c.id),
                func.sum(m.c.active.cast(Integer)),
                func.sum((m.c.kind == "reference").cast(Integer)),
            )
        ).one()
        images = conn.execute(
            select(func.count(i.c.id), func.max(i.c.id), func.count(i.c.broken))
        ).one()
    return tuple(models) + tuple(images)


def load_pair_votes(store, index: CandidateIndex) -> np.ndarray:
    """Votes per unordered model pair, as a symmetric matrix: every vote on a normal
    battle, excluded raters and raters on probation too (balance is about what was
    shown to people; judges' votes are left out: see arena.storage.vote_counts)."""
    cells = store.pair_outcome_counts(
        index.model_ids,
        include_excluded=True,
        include_probation=True,
        include_gold=False,
        include_judges=False,
    )
    votes = cells.sum(axis=2)
    return votes + votes.T


def load_seen_pairs(store, rater_id: int) -> set[tuple[int, int]]:
    """Unordered image pairs already served to this rater."""
    b = db.Battle.__table__
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(b.c.left_image_id, b.c.right_image_id).where(b.c.rater_id == rater_id)
        ).all()
    return {(min(x, y), max(x, y)) for x, y in rows}


# -- the matchmaker ---------------------------------------------------------------------
@dataclass(frozen=True)
class Pairing:
    prompt_id: int
    left_image_id: int
    right_image_id: int
    policy: str


class Matchmaker:
    """Chooses battles for raters; one per app, shared by all request threads (locked)."""

    RANDOM_TRIES = 8

    def __init__(
        self,
        store,
        policy: PairingPolicy,
        rng: np.random.Generator,
        refresh_seconds: float = 10.0,
        pending_seconds: float = 120.0,
        max_raters_cached: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.store = store
        self.policy = policy
        self.rng = rng
        self.refresh_seconds = refresh_seconds
        self.pending_seconds = pending_seconds
        self.max_raters_cached = max_raters_cached
        self.clock = clock
        self._lock = threading.RLock()
        self._index: CandidateIndex | None = None
        self._signature: tuple | None = None
        self._checked_at = -np.inf
        self._votes: np.ndarray | None = None
        self._pending: OrderedDict[str, tuple[int, int, float]] = OrderedDict()
        self._seen: OrderedDict[int, set[tuple[int, int]]] = OrderedDict()

    @classmethod
    def for_store(cls, store, **kwargs) -> Matchmaker:
        """The matchmaker the store's settings ask for (policy and seed)."""
        settings = store.settings
        policy = make_policy(settings.matchmaking_policy, store)
        return cls(store, policy, np.random.default_rng(settings.seed), **kwargs)

    # -- index lifecycle
    def invalidate(self) -> None:
        """Rebuild the index (and reload vote counts) before the next choice."""
        with self._lock:
            self._index = None

    def index(self) -> CandidateIndex:
        with self._lock:
            now = self.clock()
            if self._index is not None and now - self._checked_at < self.refresh_seconds:
                return self._index
            signature = index_signature(self.store)
            self._checked_at = now
            if self._index is None or signature != self._signature:
                # New images become servable only with their display renditions made (an
                # import run with another display size does not make ours): a first fetch
                # that waited for one would tell new images, so new models, apart.
                made = complete_renditions(self.store, os.cpu_count() or 1)
                if made:
                    log.info("made %d missing display renditions", made)
                self._index = load_index(self.store)
                self._signature = signature
                self._votes = load_pair_votes(self.store, self._index)
                self._pending.clear()
            return self._index

    def stats(self) -> PairStats:
        with self._lock:
            index = self.index()
            self._expire_pending()
            n = index.n_models
            pending = np.zeros((n, n), dtype=np.int64)
            for a, b, _t in self._pending.values():
                pending[a, b] += 1
                pending[b, a] += 1
            return PairStats(
                tuple(int(x) for x in index.model_ids),
                tuple(index.model_names),
                self._votes.copy(),
                pending,
                index.available.copy(),
            )

    def _expire_pending(self) -> None:
        cutoff = self.clock() - self.pending_seconds
        while self._pending:
            token, (_a, _b, t) = next(iter(self._pending.items()))
            if t >= cutoff:
                break
            self._pending.pop(token)

    # -- per-rater history
    def seen_pairs(self, rater_id: int) -> set[tuple[int, int]]:
        with self._lock:
            seen = self._seen.get(rater_id)
            if seen is None:
                seen = load_seen_pairs(self.store, rater_id)
                self._seen[rater_id] = seen
                while len(self._seen) > self.max_raters_cached:
                    self._seen.popitem(last=False)
            else:
                self._seen.move_to_end(rater_id)
            return seen

    # -- choosing
    def choose(self, rater_id: int) -> Pairing:
        """A new battle for this rater (not yet recorded: call ``note_served`` after)."""
        with self._lock:
            index = self.index()
            if index.n_models < 2:
                raise NoPairAvailable(
                    f"only {index.n_models} model(s) with servable images; the arena needs at "
                    "least two models with images for the same prompts (see `arena status`)."
                )
            stats = self.stats()
            probs = np.asarray(self.policy.probabilities(stats), dtype=float)
            if not np.any(probs > 0):
                raise NoPairAvailable(
                    "no two models have images for a common prompt; import or generate images "
                    "for the same prompts for at least two models."
                )
            seen = self.seen_pairs(rater_id)
            rows, cols = pair_index(index.n_models)
            probs = probs.copy()
            while probs.sum() > 0:
                k = int(self.rng.choice(len(probs), p=probs / probs.sum()))
                a, b = int(rows[k]), int(cols[k])
                found = self._pick_images(index, a, b, seen)
                if found is not None:
                    prompt, image_a, image_b = found
                    if self.rng.random() < 0.5:
                        image_a, image_b = image_b, image_a
                    return Pairing(prompt, image_a, image_b, self.policy.name)
                probs[k] = 0.0  # this rater has seen every image pair of this model pair
            raise NoPairAvailable(
                "you have already seen every pair of images this arena can show; thank you! "
                "Come back when new images are added."
            )

    def _pick_images(
        self, index: CandidateIndex, a: int, b: int, seen: set[tuple[int, int]]
    ) -> tuple[int, int, int] | None:
        shared = index.shared[(a, b)]
        if len(shared) == 0:
            return None
        for _ in range(self.RANDOM_TRIES):
            prompt = int(shared[self.rng.integers(len(shared))])
            ia = index.per_model[a].images_for(prompt)
            ib = index.per_model[b].images_for(prompt)
            x, y = int(ia[self.rng.integers(len(ia))]), int(ib[self.rng.integers(len(ib))])
            if (min(x, y), max(x, y)) not in seen:
                return prompt, x, y
        # Many draws hit seen pairs: enumerate what is left for this model pair.
        prompts, left, right = index.all_image_pairs(a, b)
        lo, hi = np.minimum(left, right), np.maximum(left, right)
        fresh = np.array(
            [(int(p), int(q)) not in seen for p, q in zip(lo, hi, strict=True)], dtype=bool
        )
        if not fresh.any():
            return None
        k = int(self.rng.choice(np.flatnonzero(fresh)))
        return int(prompts[k]), int(left[k]), int(right[k])

    # -- bookkeeping after the database commits
    def draw(self, function):
        """Call ``function(rng)`` with the matchmaker's seeded generator, under its lock."""
        with self._lock:
            return function(self.rng)

    def note_served(self, rater_id: int, token: str, pairing: Pairing) -> None:
        with self._lock:
            x, y = pairing.left_image_id, pairing.right_image_id
            self.seen_pairs(rater_id).add((min(x, y), max(x, y)))
            index = self._index
            if index is None:
                return
            a, b = index.model_position(x), index.model_position(y)
            if a is not None and b is not None:
                self._pending[token] = (a, b, self.clock())

    def note_vote(self, token: str, left_image_id: int, right_image_id: int) -> None:
        with self._lock:
            self._pending.pop(token, None)
            index = self._index
            if index is None or self._votes is None:
                return
            a, b = index.model_position(left_image_id), index.model_position(right_image_id)
            if a is not None and b is not None and a != b:
                self._votes[a, b] += 1
                self._votes[b, a] += 1
