"""An AI judge votes in the arena: it is served battles and votes on them as its own rater.

``run_judge`` plans which image pairs to judge, serves each *order* of a pair as a
battle through :func:`arena.voting.battles.serve_battle` (a battle row, a token, two
random handles) and stores the judge's answer through
:func:`arena.voting.battles.record_vote`, as the web app does for a person. The judge
is blind by construction: it gets the :class:`~arena.voting.battles.BattleView` (the
prompt and two image URLs) and opens the images behind the handles the way the image
route does (:func:`arena.voting.battles.handle_image`: the display renditions people
see), so it cannot be shown a model's name, an image id or a file name.

Which pairs: by default the image pairs people voted on (counted votes of every kind
but judges), most-voted first, so the judge can be compared with the human majority
on the same pairs; with ``pairs="any"``, then new pairs the matchmaker chooses for the
judge (which never repeats a pair to a rater). Every pair is judged in both orders
(first: the image whose pixel hash sorts first on the left; then swapped) and both
votes are stored, each with its answer probabilities and its order, so the page can
report how often the two orders agree (position consistency).

Resumable: the orders this judge already voted on are skipped; a pair killed after
its first order gets only its second. A cap (``max_votes``) bounds one run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image as PILImage

from arena.voting.battles import (
    BattleError,
    RaterIdentity,
    handle_image,
    record_vote,
    serve_battle,
)
from arena.voting.matchmaking import Matchmaker, NoPairAvailable, Pairing

POLICY = "judge"


@dataclass(frozen=True)
class Order:
    """One battle to judge: a pair of images in one order (``order``: first / swapped)."""

    prompt_id: int
    left_image_id: int
    right_image_id: int
    order: str

    def pairing(self) -> Pairing:
        return Pairing(self.prompt_id, self.left_image_id, self.right_image_id, POLICY)


def voted_pairs(store) -> list[tuple[int, int, int, str, str]]:
    """The image pairs people voted on: (prompt id, image a, image b, sha a, sha b) with
    ``sha a < sha b``, most-voted first, then by the pixel hashes (never by ids, so the
    order does not move when ids do)."""
    votes = store.votes_frame()
    votes = votes[votes["rater_kind"] != "judge"]
    votes = votes[votes["left_image_id"] != votes["right_image_id"]]
    if votes.empty:
        return []
    left_first = votes["left_sha256"].to_numpy() < votes["right_sha256"].to_numpy()
    frame = votes.assign(
        a=np.where(left_first, votes["left_image_id"], votes["right_image_id"]),
        b=np.where(left_first, votes["right_image_id"], votes["left_image_id"]),
        sha_a=np.where(left_first, votes["left_sha256"], votes["right_sha256"]),
        sha_b=np.where(left_first, votes["right_sha256"], votes["left_sha256"]),
    )
    counts = (
        frame.groupby(["prompt_id", "a", "b", "sha_a", "sha_b"], sort=False)
        .size()
        .reset_index(name="n")
        .sort_values(["n", "sha_a", "sha_b", "prompt_id"], ascending=[False, True, True, True])
    )
    return [
        (int(p), int(a), int(b), str(sa), str(sb))
        for p, a, b, sa, sb in counts[["prompt_id", "a", "b", "sha_a", "sha_b"]].itertuples(
            index=False
        )
    ]


def pending_orders(
    pairs: Iterable[tuple[int, int, int]], done: set[tuple[int, int]]
) -> list[Order]:
    """Both orders of each (prompt, first image, second image), less those already voted."""
    out = []
    for prompt_id, a, b in pairs:
        for left, right, order in ((a, b, "first"), (b, a, "swapped")):
            if (left, right) not in done:
                out.append(Order(prompt_id, left, right, order))
    return out


class JudgeSchedule:
    """What ``serve_battle`` asks a matchmaker for, answered from a planned list of
    orders; once it runs out, new pairs from ``matchmaker`` (if any), each followed by
    its swapped order. The judge is never given a gold battle."""

    def __init__(self, orders: Sequence[Order], matchmaker: Matchmaker | None = None, store=None):
        self.queue = list(orders)
        self.matchmaker = matchmaker
        self.store = store
        self.last: Order | None = None
        self._sha = None

    def _sha_of(self, image_id: int) -> str:
        if self._sha is None:
            frame = self.store.images_frame(include_broken=True)
            self._sha = dict(zip(frame["image_id"], frame["sha256"], strict=True))
        return self._sha[image_id]

    def choose(self, rater_id: int) -> Pairing:
        if not self.queue and self.matchmaker is not None:
            pick = self.matchmaker.choose(rater_id)  # raises NoPairAvailable when done
            a, b = pick.left_image_id, pick.right_image_id
            if self._sha_of(a) > self._sha_of(b):
                a, b = b, a
            self.queue = [
                Order(pick.prompt_id, a, b, "first"),
                Order(pick.prompt_id, b, a, "swapped"),
            ]
        if not self.queue:
            raise NoPairAvailable("no pair left to judge")
        self.last = self.queue.pop(0)
        return self.last.pairing()

    def draw(self, function):
        return None  # no gold battles for a judge

    def note_served(self, rater_id: int, token: str, pairing: Pairing) -> None:
        if self.matchmaker is not None:
            self.matchmaker.note_served(rater_id, token, pairing)

    def note_vote(self, token: str, left_image_id: int, right_image_id: int) -> None:
        if self.matchmaker is not None:
            self.matchmaker.note_vote(token, left_image_id, right_image_id)


@dataclass
class JudgeSummary:
    judge: str
    rater_id: int
    planned: int
    votes: int = 0
    seconds: float = 0.0
    outcomes: dict[str, int] = field(default_factory=dict)
    pairs_both_orders: int = 0
    consistent: int = 0
    voted_pairs: int = 0  # image pairs people voted on (what --pairs voted judges)

    @property
    def votes_per_second(self) -> float:
        return self.votes / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        out = [
            f"judge {self.judge} (rater {self.rater_id}): {self.votes} votes of {self.planned} "
            f"planned in {self.seconds:.1f} s ({self.votes_per_second:.2f} votes/s)",
            "outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))
            if self.outcomes
            else "outcomes: none",
        ]
        if self.pairs_both_orders:
            share = self.consistent / self.pairs_both_orders
            out.append(
                f"position consistency (this run): {self.consistent} of "
                f"{self.pairs_both_orders} pairs judged alike in both orders ({share:.0%})"
            )
        return out


SWAP = {"left": "right", "right": "left", "tie": "tie", "both_bad": "both_bad"}


def _open_rendition(store, url: str) -> PILImage.Image:
    """The display rendition behind a battle's image URL, as the image route serves it."""
    handle = url.rsplit("/", 1)[-1]
    sha = handle_image(store, handle, None)
    if sha is None:
        raise RuntimeError(f"the judge's battle image {url!r} is not servable")
    path = store.images.renditions.ensure(sha, store.images)
    with PILImage.open(path) as image:
        return image.convert("RGB")


def run_judge(
    store,
    judge,
    *,
    group: str | None = None,
    max_votes: int | None = None,
    batch_size: int = 8,
    pairs: str = "voted",
    progress: Callable[[int], None] | None = None,
) -> JudgeSummary:
    """Judge pending orders in batches until none is left or ``max_votes`` are stored.

    ``judge`` has ``name``, ``details()`` and ``judge(image_pairs, prompts)`` ->
    :class:`scoring.judge.Verdicts` (a :class:`scoring.judge.PairJudge`). ``progress``
    is called with the number of votes stored after each batch.
    """
    if pairs not in ("voted", "any"):
        raise ValueError(f"pairs {pairs!r}: expected 'voted' or 'any'")
    if batch_size < 1:
        raise ValueError(f"batch size {batch_size}: must be 1 or more")
    rater_id = store.judge_rater(judge.name, judge.details(), group)
    identity = RaterIdentity.for_judge(judge.name, group)
    done = store.voted_orders(rater_id)
    voted = voted_pairs(store)
    planned = pending_orders(((p, a, b) for p, a, b, _sa, _sb in voted), done)
    matchmaker = Matchmaker.for_store(store) if pairs == "any" else None
    schedule = JudgeSchedule(planned, matchmaker, store)
    limit = max_votes if max_votes is not None else len(planned)
    summary = JudgeSummary(judge.name, rater_id, limit if matchmaker else min(limit, len(planned)))
    summary.voted_pairs = len(voted)
    verdict_of: dict[tuple[int, int], str] = {}
    started = time.perf_counter()
    while summary.votes < limit:
        views, orders = [], []
        with store.write_session() as s:  # the batch's battles: one transaction
            for _ in range(min(batch_size, limit - summary.votes)):
                try:
                    views.append(serve_battle(store, identity, schedule, session=s))
                except BattleError as exc:
                    if exc.reason == "no_battle":  # nothing left to judge
                        break
                    raise
                orders.append(schedule.last)
        if not views:
            break
        images = [
            (_open_rendition(store, v.left_url), _open_rendition(store, v.right_url)) for v in views
        ]
        t0 = time.perf_counter()
        verdicts = judge.judge(images, [v.prompt for v in views])
        per_vote_ms = int(1000 * (time.perf_counter() - t0) / len(views))
        outcomes = verdicts.outcomes()
        with store.write_session() as s:  # and its votes: one more
            for k, (view, outcome) in enumerate(zip(views, outcomes, strict=True)):
                details = {**verdicts.details(k), "order": orders[k].order}
                record_vote(
                    store, view.token, identity, outcome, per_vote_ms, details=details, session=s
                )
        for order, outcome in zip(orders, outcomes, strict=True):
            summary.votes += 1
            summary.outcomes[outcome] = summary.outcomes.get(outcome, 0) + 1
            _note_consistency(summary, verdict_of, order, outcome)
        if progress is not None:
            progress(summary.votes)
    summary.seconds = time.perf_counter() - started
    return summary


def _note_consistency(summary: JudgeSummary, seen: dict, order: Order, outcome: str) -> None:
    """Count pairs whose two orders this run judged alike (the swapped one mapped back)."""
    key = (
        min(order.left_image_id, order.right_image_id),
        max(order.left_image_id, order.right_image_id),
    )
    as_first = outcome if order.order == "first" else SWAP[outcome]
    if key in seen:
        summary.pairs_both_orders += 1
        summary.consistent += int(seen.pop(key) == as_first)
    else:
        seen[key] = as_first
