"""Who may ask for battles and votes, and how often.

A rater id is issued and signed by the server (``v1`` + 16 random hex + a
32-hex HMAC), so a client cannot mint identities by making up strings: new ids
come only from :meth:`Admission.issue`, which is limited per network address
group. Battles are limited per rater and per group, votes per group (the
per-rater vote limits live in ``arena.voting.battles``, in the database). Logged-in
raters are their login: switching browser ids does not make a new rater.

Address groups: an IPv4 address, or the /64 of an IPv6 address (one home or
one cloud machine usually holds a whole /64). The connecting address is the
client's unless it is one of ``trusted_proxies``; then uvicorn's proxy-headers
middleware (set up in ``arena.serve``) has already put the client address
from ``X-Forwarded-For`` in its place. The database stores only a keyed hash
of the group (``client_group``), never the address.

Counters are the ``limits`` library's moving windows in this process's
memory: a deployment running N server processes allows up to N times each
per-address rate (documented in the threat model).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
from dataclasses import dataclass

from limits import RateLimitItemPerHour, RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from arena.voting.battles import BattleError, RaterIdentity

ID_PATTERN = re.compile(r"^v1([0-9a-f]{16})([0-9a-f]{32})$")
UNKNOWN_ADDRESS = "unknown"


def address_group(host: str | None) -> str:
    """The network group of a client address: ``a.b.c.d/32`` or ``x:x:x:x::/64``."""
    try:
        address = ipaddress.ip_address((host or "").strip())
    except ValueError:
        return UNKNOWN_ADDRESS  # e.g. a test client without a socket
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 32 if address.version == 4 else 64
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def request_host(request) -> str | None:
    """The client address of a Gradio or Starlette request (None when there is none)."""
    client = getattr(request, "client", None)
    return getattr(client, "host", None)


@dataclass(frozen=True)
class Limits:
    battles_per_rater: RateLimitItemPerMinute
    battles_per_group: RateLimitItemPerMinute
    votes_per_group: RateLimitItemPerMinute
    ids_per_group: RateLimitItemPerHour

    @classmethod
    def from_settings(cls, settings) -> Limits:
        return cls(
            RateLimitItemPerMinute(max(1, settings.battles_per_minute)),
            RateLimitItemPerMinute(max(1, settings.address_battles_per_minute)),
            RateLimitItemPerMinute(max(1, settings.address_votes_per_minute)),
            RateLimitItemPerHour(max(1, settings.rater_ids_per_address_per_hour)),
        )


class Admission:
    """Issues and checks rater ids, hashes address groups and applies the rate limits."""

    def __init__(self, store):
        self.settings = store.settings
        self._id_key = bytes.fromhex(store.server_secret("rater_ids"))
        self._group_key = bytes.fromhex(store.server_secret("address_groups"))
        self.limits = Limits.from_settings(self.settings)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        # login name -> rater group, from the login file (``arena serve --auth-file``):
        # the group a login's rater is created in. Set by the server, never by a request.
        self.login_groups: dict[str, str] = {}

    @classmethod
    def of(cls, store) -> Admission:
        """The one Admission of a store (shared by the vote tab and the image route)."""
        return store.shared(cls, lambda: cls(store))

    # -- ids ----------------------------------------------------------------------
    def _mac(self, nonce: str) -> str:
        return hmac.new(self._id_key, nonce.encode(), hashlib.sha256).hexdigest()[:32]

    def is_issued(self, rater_id) -> bool:
        match = ID_PATTERN.match(rater_id) if isinstance(rater_id, str) else None
        return bool(match) and hmac.compare_digest(match.group(2), self._mac(match.group(1)))

    def issue(self, group: str) -> str:
        """A new signed rater id for a client of ``group`` (its hash), within the hourly limit."""
        if not self._limiter.hit(self.limits.ids_per_group, "ids", group):
            raise BattleError(
                "rate_limited",
                f"too many new rater ids from your network in the last hour (the limit is "
                f"{self.limits.ids_per_group.amount}); keep the id you have, or try again later.",
            )
        nonce = secrets.token_hex(8)
        return f"v1{nonce}{self._mac(nonce)}"

    def identity(self, rater_id, login: str | None) -> RaterIdentity:
        """The rater of a request: the login when there is one, else an issued id."""
        if self.settings.require_login and not login:
            raise BattleError(
                "login_required", "this arena needs a login to vote: log in, then reload."
            )
        if login:
            return RaterIdentity.for_login(login, self.login_groups.get(login))
        if not self.is_issued(rater_id):
            raise BattleError(
                "bad_rater",
                "this rater id was not issued by this server: ask for one with the /rater "
                "endpoint (the page does it for you) and keep it.",
            )
        return RaterIdentity(rater_id)

    # -- address groups and limits -----------------------------------------------
    def group(self, request) -> str:
        """The keyed hash of the request's address group (what battles and raters store)."""
        network = address_group(request_host(request))
        return hmac.new(self._group_key, network.encode(), hashlib.sha256).hexdigest()[:32]

    def allow_battle(self, identity: RaterIdentity, group: str) -> None:
        ok_rater = self._limiter.hit(self.limits.battles_per_rater, "battle-rater", identity.key)
        ok_group = ok_rater and self._limiter.hit(
            self.limits.battles_per_group, "battle-group", group
        )
        if not (ok_rater and ok_group):
            limit = self.limits.battles_per_rater if not ok_rater else self.limits.battles_per_group
            who = "you have" if not ok_rater else "your network has"
            raise BattleError(
                "rate_limited",
                f"{who} asked for more than {limit.amount} battles in the last minute; "
                "please take a short break.",
            )

    def allow_vote(self, group: str) -> None:
        if not self._limiter.hit(self.limits.votes_per_group, "vote-group", group):
            raise BattleError(
                "rate_limited",
                f"your network has cast more than {self.limits.votes_per_group.amount} votes in "
                "the last minute; please take a short break.",
            )
