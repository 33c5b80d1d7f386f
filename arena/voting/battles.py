"""Serve a battle, record a vote: the two writes of the voting arena.

``serve_battle`` asks the matchmaker for a pair, writes a ``battles`` row with a
random token and two random image handles, and returns a ``BattleView``: the
prompt and two URLs made of those handles -- nothing that names a model, an
image or a file. The same image in two battles has two unrelated URLs; the
image route (``arena.ui.images``) serves a handle's display rendition only
while its battle is open. ``record_vote`` stores exactly one vote
per battle, in one transaction; every refusal raises ``BattleError`` (with a
machine-readable ``reason`` and a message for the rater) before anything is
written, so a refused vote changes nothing.

Rater identity is a ``RaterIdentity``: the id the server issued to the browser
(or API client), or the login name when the app runs with authentication
(keyed ``login:<name>``: a login is one rater whatever browser it uses). The
web app checks that ids were issued (``arena.voting.admission``); domain callers such
as simulations pass ids of their own.

Battle tokens come from ``secrets`` (not the seeded matchmaking generator): a
token is what authorises a vote, so it must not be predictable from the seed.
"""

from __future__ import annotations

import math
import re
import secrets
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from arena.stats.pairs import OUTCOMES
from arena.storage import db
from arena.voting.echo import echo
from arena.voting.gold import GoldPair, GoldPool, plan_gold
from arena.voting.matchmaking import Matchmaker

OUTCOME_LABELS = {
    "left": "Left is better",
    "right": "Right is better",
    "tie": "Tie",
    "both_bad": "Both are bad",
}
RATER_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
IMAGE_ROUTE = "img"


class BattleError(ValueError):
    """A refused battle or vote. ``reason`` is one of REASONS; the message is for people."""

    REASONS = (
        "bad_rater",
        "bad_outcome",
        "bad_decision_ms",
        "unknown_token",
        "wrong_rater",
        "already_voted",
        "expired",
        "rate_limited",
        "daily_cap",
        "no_battle",
        "login_required",
    )

    def __init__(self, reason: str, message: str):
        assert reason in self.REASONS, reason
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class RaterIdentity:
    browser_id: str
    login: str | None = None
    kind: str = "human"
    # The login's rater group from the login file (arena serve --auth-file); a browser
    # never sets it (an issued id has none).
    group: str | None = None
    # An AI judge's name (``arena judge``); only domain callers build such an identity.
    judge: str | None = None

    def __post_init__(self):
        if not isinstance(self.browser_id, str) or not RATER_ID_PATTERN.match(self.browser_id):
            raise BattleError(
                "bad_rater",
                f"rater id {echo(self.browser_id)} is not valid: expected 8 to 64 characters of "
                "letters, digits, '-' or '_' (the page makes one for you; API clients pick a "
                "random one, e.g. secrets.token_hex(16), and keep it).",
            )

    @classmethod
    def for_login(cls, login: str, group: str | None = None) -> RaterIdentity:
        return cls("logged-in", login=login, group=group)

    @classmethod
    def for_judge(cls, name: str, group: str | None = None) -> RaterIdentity:
        return cls("ai-judge", kind="judge", group=group, judge=name)

    @property
    def key(self) -> str:
        """The ``raters.external_id`` of this identity."""
        if self.judge:
            return f"judge:{self.judge}"
        return f"login:{self.login}" if self.login else self.browser_id


def as_identity(rater: RaterIdentity | str) -> RaterIdentity:
    return rater if isinstance(rater, RaterIdentity) else RaterIdentity(rater)


def image_url(handle: str) -> str:
    """Relative URL of a served image: the battle's opaque handle only (arena.ui.images)."""
    return f"{IMAGE_ROUTE}/{handle}"


def new_handle() -> str:
    return secrets.token_urlsafe(18)


@dataclass(frozen=True)
class BattleView:
    """What the page (and the API) gets for a battle: no model name, no hash, no path."""

    token: str
    prompt: str
    left_url: str
    right_url: str
    served_at: datetime

    def public(self) -> dict:
        return {
            "token": self.token,
            "prompt": self.prompt,
            "left_image": self.left_url,
            "right_image": self.right_url,
        }


@dataclass(frozen=True)
class VoteReceipt:
    """A stored vote. Model names are for the reveal *after* the commit."""

    vote_id: int
    battle_token: str
    outcome: str
    decision_ms: int
    flag: str | None
    left_model: str
    right_model: str


def _writing(store, session):
    """``session`` (a caller's transaction, e.g. a judge's batch) or a new write session."""
    return nullcontext(session) if session is not None else store.write_session()


def serve_battle(
    store,
    rater: RaterIdentity | str,
    matchmaker: Matchmaker,
    now: datetime | None = None,
    client_group: str | None = None,
    session=None,
) -> BattleView:
    """Choose a pair for this rater, store the battle row, return what the page shows.

    ``client_group`` is the keyed hash of the client's address group (stored for the
    targeted-voting test and the image route's check), or None outside the web app.
    ``session``: write in the caller's transaction (a judge serves a batch in one).
    """
    identity = as_identity(rater)
    from arena.voting.matchmaking import NoPairAvailable

    rater_id = store.rater_id(
        identity.key,
        identity.kind,
        identity.login,
        session=session,
        client_group=client_group,
        group=identity.group,
    )
    # No transaction is held while choosing: the matchmaker is shared (locked) and may
    # read the database itself; holding a connection here could starve the pool.
    try:
        pairing = matchmaker.choose(rater_id)
    except NoPairAvailable as exc:
        raise BattleError("no_battle", str(exc)) from None
    token, handles = secrets.token_urlsafe(24), (new_handle(), new_handle())
    served_at = now or db.utcnow()
    gold = matchmaker.draw(lambda rng: plan_gold(rng, store.settings.gold_rate))
    kind, gold_answer = "normal", None
    if gold is not None:
        pair = matchmaker.draw(GoldPool.of(store).draw)
        if pair is not None:
            pairing = _gold_pairing(pair, gold.intact_side)
            kind, gold_answer = "gold", gold.intact_side
    with _writing(store, session) as s:
        s.add(
            db.Battle(
                token=token,
                prompt_id=pairing.prompt_id,
                left_image_id=pairing.left_image_id,
                right_image_id=pairing.right_image_id,
                rater_id=rater_id,
                policy=pairing.policy,
                kind=kind,
                gold_answer=gold_answer,
                served_at=served_at,
                left_handle=handles[0],
                right_handle=handles[1],
                client_group=client_group,
            )
        )
        prompt = s.scalar(select(db.Prompt.text).where(db.Prompt.id == pairing.prompt_id))
    matchmaker.note_served(rater_id, token, pairing)
    return BattleView(token, prompt, image_url(handles[0]), image_url(handles[1]), served_at)


def _gold_pairing(pair: GoldPair, intact_side: str):
    """A pooled image against its degraded copy, the intact one on ``intact_side``."""
    from arena.voting.matchmaking import Pairing

    intact, copy = pair.intact_id, pair.copy_id
    left, right = (intact, copy) if intact_side == "left" else (copy, intact)
    return Pairing(pair.prompt_id, left, right, "gold")


def _decision_ms(decision_ms, elapsed_ms: int) -> int:
    """The client's decision time, bounded by the time since the battle was served."""
    if decision_ms is None:
        return elapsed_ms
    # The domain checks the type itself: no int() on the way in (True would be 1, "1500"
    # 1500, NaN and inf Python errors).
    if isinstance(decision_ms, bool) or not isinstance(decision_ms, int | float):
        raise BattleError(
            "bad_decision_ms",
            f"decision_ms {echo(decision_ms)} is a {type(decision_ms).__name__}, expected a "
            "number: send the milliseconds between showing the images and the vote as a "
            "JSON number (e.g. 2400), or null to leave it out.",
        )
    if (isinstance(decision_ms, float) and not math.isfinite(decision_ms)) or decision_ms < 0:
        raise BattleError(
            "bad_decision_ms",
            f"decision_ms {echo(decision_ms)} is out of range, expected a finite number of "
            "milliseconds, zero or more (e.g. 2400), or null to leave it out.",
        )
    # A client cannot have decided before the battle existed.
    return min(int(decision_ms), elapsed_ms)


def record_vote(
    store,
    battle_token: str,
    rater: RaterIdentity | str,
    outcome: str,
    decision_ms: int | None = None,
    *,
    matchmaker: Matchmaker | None = None,
    now: datetime | None = None,
    details: dict | None = None,
    session=None,
) -> VoteReceipt:
    """Store the one vote of a battle, or raise ``BattleError`` and change nothing.

    A judge's vote (the battle's rater is of kind ``judge``, which only ``arena judge``
    creates) carries ``details`` (its answer probabilities) and is exempt from what
    guards against people -- the battle's lifetime, the rate limit, the daily cap and the
    fast-vote flag -- since a batch of pairs on a slow machine takes longer than a
    person may, and faster than a person can. ``details`` for anyone else is an error.
    ``session``: write in the caller's transaction (a judge records a batch in one).
    """
    settings = store.settings
    if outcome not in OUTCOMES:
        raise BattleError(
            "bad_outcome",
            f"outcome {echo(outcome)} is not one of {', '.join(OUTCOMES)} "
            "(left better, right better, tie, both bad).",
        )
    identity = as_identity(rater)
    if not isinstance(battle_token, str) or not TOKEN_PATTERN.match(battle_token):
        raise BattleError(
            "unknown_token", "this battle token is not valid; ask for a new battle and vote on it."
        )
    now = now or db.utcnow()
    with _writing(store, session) as s:
        battle = s.scalar(select(db.Battle).where(db.Battle.token == battle_token))
        if battle is None:
            raise BattleError(
                "unknown_token", "no battle has this token; ask for a new battle and vote on it."
            )
        rater = s.execute(
            select(db.Rater.id, db.Rater.kind).where(db.Rater.external_id == identity.key)
        ).first()
        if rater is None or rater.id != battle.rater_id:
            raise BattleError(
                "wrong_rater",
                "this battle was served to another rater; each rater votes on their own battles.",
            )
        rater_id, is_judge = rater.id, rater.kind == "judge"
        if details is not None and not is_judge:
            raise ValueError("vote details are a judge's answer probabilities; people have none")
        if s.scalar(select(db.Vote.id).where(db.Vote.battle_id == battle.id)) is not None:
            raise BattleError(
                "already_voted", "this battle already has a vote; only the first one counts."
            )
        elapsed = now - battle.served_at
        if elapsed > timedelta(seconds=settings.battle_ttl_seconds) and not is_judge:
            raise BattleError(
                "expired",
                f"this battle expired (votes are accepted for {settings.battle_ttl_seconds} s "
                "after it is shown); here is a fresh one.",
            )
        if not is_judge:
            _check_limits(s, rater_id, now, settings)
        decision = _decision_ms(decision_ms, max(0, int(elapsed.total_seconds() * 1000)))
        flag = "fast" if decision < settings.min_decision_ms and not is_judge else None
        vote = db.Vote(
            battle_id=battle.id,
            rater_id=rater_id,
            outcome=outcome,
            decision_ms=decision,
            flag=flag,
            details=details,
            created_at=now,
        )
        s.add(vote)
        try:
            s.flush()
        except IntegrityError:  # a concurrent vote on the same battle won the race
            raise BattleError(
                "already_voted", "this battle already has a vote; only the first one counts."
            ) from None
        names = dict(
            s.execute(
                select(db.Image.id, db.Model.name)
                .join(db.Model, db.Model.id == db.Image.model_id)
                .where(db.Image.id.in_([battle.left_image_id, battle.right_image_id]))
            ).all()
        )
        receipt = VoteReceipt(
            vote.id,
            battle_token,
            outcome,
            decision,
            flag,
            names[battle.left_image_id],
            names[battle.right_image_id],
        )
        left_id, right_id = battle.left_image_id, battle.right_image_id
    if matchmaker is not None:
        matchmaker.note_vote(battle_token, left_id, right_id)
    return receipt


def _check_limits(s, rater_id: int, now: datetime, settings) -> None:
    window_start = now - timedelta(seconds=60)
    recent = s.execute(
        select(func.count(db.Vote.id), func.min(db.Vote.created_at)).where(
            db.Vote.rater_id == rater_id, db.Vote.created_at > window_start
        )
    ).one()
    if recent[0] >= settings.rate_limit_per_minute:
        wait = max(1, int((recent[1] + timedelta(seconds=60) - now).total_seconds()) + 1)
        raise BattleError(
            "rate_limited",
            f"Thanks for your enthusiasm! You have cast {recent[0]} votes in the last minute "
            f"(the limit is {settings.rate_limit_per_minute}); please take a short break and "
            f"vote again in about {wait} s.",
        )
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    today = s.scalar(
        select(func.count(db.Vote.id)).where(
            db.Vote.rater_id == rater_id, db.Vote.created_at >= midnight
        )
    )
    if today >= settings.daily_vote_cap:
        raise BattleError(
            "daily_cap",
            f"You have cast {today} votes today, the daily maximum; thank you! Voting opens "
            "again at midnight UTC.",
        )


def handle_image(store, handle: str, group: str | None) -> str | None:
    """The pixel hash behind a handle, while its battle is open and only for ``group``.

    A handle works ``battle_ttl_seconds`` (the store's setting) after its battle was
    served, from the address group it was served to; for anything else the answer is
    None (the image route, arena.ui.images, answers every such request with the same 404).
    """
    b = db.Battle.__table__
    with store.session() as s:
        row = s.execute(
            select(
                b.c.left_handle,
                b.c.left_image_id,
                b.c.right_image_id,
                b.c.served_at,
                b.c.client_group,
            ).where(or_(b.c.left_handle == handle, b.c.right_handle == handle))
        ).first()
        if row is None:
            return None
        left_handle, left_id, right_id, served_at, battle_group = row
        ttl = timedelta(seconds=store.settings.battle_ttl_seconds)
        if db.utcnow() - served_at > ttl or (battle_group is not None and battle_group != group):
            return None
        image_id = left_id if left_handle == handle else right_id
        return s.scalar(select(db.Image.sha256).where(db.Image.id == image_id))
