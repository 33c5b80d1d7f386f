"""Settings: one table of name, type, default and help.

Resolution order for every setting: an explicit override (CLI flag or keyword
argument) > the environment variable ``ARENA_<NAME>`` > the default below.
``arena settings`` prints this table; a test checks every setting has help.

The resolved ``Settings`` have one owner, the ``Store`` opened with them
(``store.settings``): the web app, its tabs, the report services, battles,
matchmaking and admission all read them there, and they do not change while the
store is open (``Store.with_settings`` opens the workspace again with others). A
server overrides only its listen address (``arena.serve.serve(store, host=, port=)``).
``ARENA_*`` variables are read here only (``Settings.explicit`` says which settings were
given rather than defaulted); the torch side (``scoring``) reads none and gets what it
needs as arguments, e.g. ``scoring.weights.WeightSources``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_WORKSPACE = "./arena-workspace"


@dataclass(frozen=True)
class Setting:
    name: str
    type: type
    default: Any
    help: str

    @property
    def env_var(self) -> str:
        return f"ARENA_{self.name.upper()}"


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "workspace",
        str,
        DEFAULT_WORKSPACE,
        "Workspace folder holding arena.db and images/. `python app.py` and every "
        "`arena` command use it unless --workspace is given.",
    ),
    Setting(
        "db_url",
        str,
        "",
        "SQLAlchemy database URL. Empty means sqlite:///<workspace>/arena.db. "
        "Use postgresql+psycopg://user:pass@host/db for shared deployments.",
    ),
    Setting("host", str, "127.0.0.1", "Address the web app listens on."),
    Setting("port", int, 7860, "Port the web app listens on."),
    Setting("seed", int, 0, "Seed for every random choice the server makes (matchmaking, demo)."),
    Setting(
        "reveal_models",
        bool,
        False,
        "Show the two model names after a vote is stored. Off (the default, and the "
        "setting for public deployments) keeps raters blind: a reveal teaches a bot which "
        "pixels belong to which model. The offline demo turns it on.",
    ),
    Setting(
        "public_view_min_votes",
        int,
        100,
        "With reveal_models off, the raters' Leaderboard and Workspace tabs show a snapshot "
        "of the votes that advances only in steps of at least this many counted votes (none "
        "before the first step), so no view a rater can see isolates one vote; filters, "
        "Compare and Agreement are in the Admin app. 1 makes the board live.",
    ),
    Setting(
        "matchmaking_policy",
        str,
        "active",
        "How the next pair is chosen: uniform, balanced or active (the default: balanced "
        "until active_min_votes votes exist, then the pair whose vote shrinks the ranking's "
        "uncertainty most).",
    ),
    Setting(
        "active_min_votes",
        int,
        500,
        "With matchmaking_policy=active, pair like balanced until this many votes exist "
        "(the ratings are too uncertain before).",
    ),
    Setting(
        "rate_limit_per_minute",
        int,
        30,
        "Most votes one rater may cast in any 60 seconds; more get a polite refusal.",
    ),
    Setting("daily_vote_cap", int, 2000, "Most votes one rater may cast per UTC day."),
    Setting(
        "battles_per_minute",
        int,
        60,
        "Most battles served to one rater in any 60 seconds (skips included).",
    ),
    Setting(
        "address_battles_per_minute",
        int,
        300,
        "Most battles served to one network address group (IPv4 address, IPv6 /64) in any "
        "60 seconds, over all its raters.",
    ),
    Setting(
        "address_votes_per_minute",
        int,
        120,
        "Most votes accepted from one network address group in any 60 seconds.",
    ),
    Setting(
        "rater_ids_per_address_per_hour",
        int,
        20,
        "Most new rater ids the server issues to one network address group per hour.",
    ),
    Setting(
        "probation_votes",
        int,
        10,
        "The votes of a rater the web app created (an issued id or a login) count on the "
        "leaderboard only once the rater has cast this many (they are stored from the "
        "first). Raters of scripts and simulations count at once.",
    ),
    Setting(
        "require_login",
        bool,
        False,
        "Voting needs a login (`arena serve --auth-file`): anonymous raters may look but not vote.",
    ),
    Setting(
        "trusted_proxies",
        str,
        "",
        "Comma-separated addresses of reverse proxies whose X-Forwarded-For header is "
        "believed (e.g. 127.0.0.1 behind nginx). Empty: the connecting address is the "
        "client's.",
    ),
    Setting(
        "max_request_bytes",
        int,
        65536,
        "Largest request body the server accepts (413 beyond, refused before it is read; "
        "chunked bodies are counted as they arrive). The page and the API send well under "
        "1 KiB per event.",
    ),
    Setting(
        "admin_login_attempts",
        int,
        10,
        "Failed logins (the Admin app's, and the raters' with --auth-file) one network "
        "address group may make within admin_lockout_seconds; then every login from it, "
        "a correct one too, is refused (429) until the oldest failure leaves the window.",
    ),
    Setting(
        "admin_lockout_seconds",
        int,
        900,
        "The window of admin_login_attempts, in seconds (15 minutes).",
    ),
    Setting(
        "display_size",
        str,
        "512x512",
        "WIDTHxHEIGHT of the display renditions raters see: every image is scaled to fit "
        "and letterboxed on neutral grey, so both sides of a battle have the same size. "
        "1024x1024 shows 1024-pixel models at full detail, at ~8x the CPU per import.",
    ),
    Setting(
        "battle_ttl_seconds",
        int,
        3600,
        "A served battle must be voted on within this many seconds, else the vote is refused.",
    ),
    Setting(
        "min_decision_ms",
        int,
        700,
        "Votes cast faster than this after the battle was served are stored but flagged.",
    ),
    Setting(
        "max_flagged_fraction",
        float,
        0.5,
        "A rater with more than this fraction of flagged votes (and at least 20 votes) is "
        "excluded from the leaderboard by policy; an admin can reverse it.",
    ),
    Setting(
        "policy_refresh_seconds",
        int,
        300,
        "The running server applies the rater-exclusion policy (flagged fractions, gold, "
        "agreement, side preference, targeted voting) every this many seconds; 0 leaves it "
        "to the Admin app's button.",
    ),
    Setting(
        "targeted_alpha",
        float,
        1e-3,
        "Level of the targeted-voting test (arena/stats/targeted.py): a rater or address group "
        "whose picks of one model exceed the Bradley-Terry expectation with a p-value, "
        "corrected over models (Bonferroni) and over everyone tested (Holm), at or below "
        "this is excluded by policy; the chance of flagging any honest rater in one run is "
        "at most this.",
    ),
    Setting(
        "targeted_min_votes",
        int,
        10,
        "Decisive votes (ties, both-bad and gold checks not counted) a rater, or an address "
        "group of two or more rater ids, needs before the targeted-voting test runs on it.",
    ),
    Setting(
        "min_votes_ranked",
        int,
        50,
        "Models with fewer votes are listed as provisional, not ranked.",
    ),
    Setting(
        "bootstrap_rounds", int, 1000, "Bootstrap rounds for leaderboard confidence intervals."
    ),
    Setting(
        "paired_metrics",
        bool,
        True,
        "Per-model metric means (leaderboard, agreement page, exports) and `arena "
        "distribution` use only the common set: the (prompt, seed) cells where every compared "
        "model has a non-broken image, so a broken image also removes its counterparts. Off: "
        "every non-broken image of each model.",
    ),
    Setting(
        "gold_rate",
        float,
        0.0,
        "Fraction of battles that are gold checks (an image against a degraded copy).",
    ),
    Setting(
        "admin_secret",
        str,
        "",
        "Password of the Admin tab (user 'admin'). Empty hides the Admin tab entirely.",
    ),
    Setting(
        "failure_modes",
        str,
        "hands, face/anatomy, extra or missing limbs, text rendering, object count, "
        "artifacts/blobs, prompt ignored, other",
        "Comma-separated failure modes a reviewer can flag an image with in the Review tab "
        "(Admin app, Review app; each 1 to 40 characters, 'other' asks for a note). Flags "
        "stored under a mode later taken off the list are kept and still counted.",
    ),
    Setting(
        "weights_dir",
        str,
        "",
        "Folder searched for metric and model weights before the Hugging Face cache.",
    ),
    Setting(
        "allow_network",
        bool,
        False,
        "Allow downloading weights from the Hugging Face hub when they are missing locally.",
    ),
    Setting(
        "score_batch_size",
        int,
        32,
        "Images per batch of `arena score` (raise it on a GPU, e.g. 64-256).",
    ),
    Setting(
        "score_num_workers",
        int,
        2,
        "DataLoader worker processes that decode and preprocess images for `arena score` "
        "(0 decodes in the main process).",
    ),
    Setting(
        "judge_template",
        str,
        "",
        "The question `arena judge` asks its vision-language model about a pair of images "
        "({prompt} marks where the prompt's text goes); empty: the built-in template "
        "(docs: AI judges). Stored with the judge's votes; a new template is a new judge.",
    ),
    Setting(
        "judge_answers",
        str,
        "left=A,right=B,tie=C,both_bad=D",
        "The answer word of each outcome in the judge template; the judge's verdict is "
        "read from the probabilities of their first tokens.",
    ),
    Setting(
        "judge_batch_size",
        int,
        8,
        "Orders of a pair (two images each) per batch of `arena judge`.",
    ),
    Setting("max_prompt_chars", int, 2000, "Longest prompt text accepted on import."),
    Setting(
        "max_image_pixels",
        int,
        64_000_000,
        "Largest image (width x height) accepted on import: a decompression-bomb guard.",
    ),
)

_BY_NAME = {s.name: s for s in SETTINGS}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class SettingsError(ValueError):
    """A setting has a value that cannot be used."""


def _coerce(setting: Setting, raw: Any, source: str) -> Any:
    if not isinstance(raw, str):
        return setting.type(raw)
    if setting.type is bool:
        low = raw.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise SettingsError(
            f"{source}={raw!r}: expected a boolean (1/0, true/false, yes/no, on/off)."
        )
    try:
        return setting.type(raw)
    except ValueError:
        raise SettingsError(
            f"{source}={raw!r}: expected a {setting.type.__name__} for setting "
            f"{setting.name!r} ({setting.help})"
        ) from None


class Settings:
    """Resolved settings; attribute access by name (``settings.port``)."""

    def __init__(self, values: dict[str, Any], explicit: frozenset[str] = frozenset()):
        self._values = dict(values)
        # The names given by an override or an ARENA_* variable, not left at the default:
        # a default that depends on the workspace (the demo's reveal) yields to them.
        self.explicit = explicit

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"no setting {name!r}; known: {', '.join(_BY_NAME)}") from None

    def replace(self, **overrides: Any) -> Settings:
        return load_settings(base=self, **overrides)

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    @property
    def workspace_path(self) -> Path:
        return Path(self.workspace).expanduser().resolve()

    @property
    def database_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"sqlite:///{self.workspace_path / 'arena.db'}"


def load_settings(
    env: dict[str, str] | None = None, base: Settings | None = None, **overrides: Any
) -> Settings:
    """Resolve every setting: overrides (not None) > environment > base or default."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    explicit = set(base.explicit) if base is not None else set()
    for setting in SETTINGS:
        if overrides.get(setting.name) is not None:
            values[setting.name] = _coerce(setting, overrides[setting.name], f"--{setting.name}")
            explicit.add(setting.name)
        elif base is None and setting.env_var in env:
            values[setting.name] = _coerce(setting, env[setting.env_var], setting.env_var)
            explicit.add(setting.name)
        elif base is not None:
            values[setting.name] = base._values[setting.name]
        else:
            values[setting.name] = setting.default
    unknown = set(overrides) - set(_BY_NAME)
    if unknown:
        raise SettingsError(f"unknown setting(s) {sorted(unknown)}; known: {', '.join(_BY_NAME)}")
    return Settings(values, frozenset(explicit))


def settings_table() -> list[tuple[str, str, str, str]]:
    """(name, env var, default, help) for every setting, for docs and `arena settings`."""
    return [(s.name, s.env_var, repr(s.default), s.help) for s in SETTINGS]
