"""The Vote tab: blinded pairwise battles, keyboard shortcuts, reveal after the vote.

Event handlers are short and call ``arena.voting.battles`` and ``arena.voting.admission``. What
reaches the browser before a vote: the prompt, two image URLs of the form
``img/<handle>`` (random, one per side and battle; see ``arena.ui.images``) and a
sequence number. Battle state (tokens, the preloaded next battle, the rater
identity, the address group) lives in a server-side ``gr.State``; the rater id
the server issued lives in the browser's local storage (``gr.BrowserState``). Model
names are rendered only after ``record_vote`` has committed, and only when
``reveal_models`` is on.

The API (``gradio_client``): ``/rater`` () -> {rater_id} (issued and signed by the
server, limited per address); ``/battle`` (rater_id) -> {token, prompt, left_image,
right_image}; ``/vote`` (battle_token, rater_id, outcome, decision_ms) ->
{stored, vote_id, outcome, flag[, left_model, right_model]}. Refusals raise
``gr.Error`` with the reason. Every other event is private.
"""

from __future__ import annotations

import html
from pathlib import Path

import gradio as gr
from gradio.context import Context

from arena.voting.admission import Admission
from arena.voting.battles import (
    OUTCOME_LABELS,
    BattleError,
    BattleView,
    RaterIdentity,
    record_vote,
    serve_battle,
)
from arena.voting.gold import GoldPool
from arena.voting.matchmaking import Matchmaker

TITLE = "Vote"
CSS = (Path(__file__).with_name("vote.css")).read_text()
JS_ON_LOAD = (Path(__file__).with_name("vote.js")).read_text()
REVEAL_MS = 1200
# key -> outcome; shown on the buttons and under them
KEYS = {"left": "←", "right": "→", "tie": "↑", "both_bad": "↓", "skip": "S"}
BUTTON_ORDER = ("left", "tie", "both_bad", "right")  # fixed: never depends on the models
# JS run before a vote is sent: the decision time measured in the browser.
DECISION_JS = "(d, s) => [window.arenaDecisionMs ? window.arenaDecisionMs() : null, s]"
DELAY_JS = f"async (s) => {{ await new Promise(r => setTimeout(r, {REVEAL_MS})); return [s]; }}"


# -- rendering ----------------------------------------------------------------------------
def battle_html(
    view: BattleView,
    seq: int,
    preload: BattleView | None = None,
    reveal: tuple[str, str] | None = None,
    outcome: str | None = None,
) -> str:
    """The battle as HTML: prompt, two same-size frames, captions, hidden preloads."""
    prompt = html.escape(view.prompt)
    sides = []
    for side, url in (("left", view.left_url), ("right", view.right_url)):
        label = "Left" if side == "left" else "Right"
        caption = f'<span class="arena-side-label">{label}</span>'
        cls = "arena-side"
        if reveal is not None:
            name = html.escape(reveal[0] if side == "left" else reveal[1])
            caption += f' <span class="arena-model">{name}</span>'
            if outcome == side:
                cls += " arena-winner"
                caption += ' <span class="arena-badge">your pick</span>'
        sides.append(
            f'<figure class="{cls}"><div class="arena-frame">'
            f'<img src="{url}" alt="{label} image" decoding="async" draggable="false"></div>'
            f"<figcaption>{caption}</figcaption></figure>"
        )
    preloads = ""
    if preload is not None:
        preloads = (
            '<div class="arena-preload" aria-hidden="true">'
            f'<img src="{preload.left_url}" alt=""><img src="{preload.right_url}" alt=""></div>'
        )
    state = "revealed" if reveal is not None or outcome is not None else "open"
    verdict = '<div class="arena-verdict"></div>'  # reserves the line: no layout shift
    if outcome is not None:
        verdict = (
            f'<div class="arena-verdict">Vote saved: <b>{OUTCOME_LABELS[outcome]}</b>'
            + (" — here are the models." if reveal else ".")
            + "</div>"
        )
    return (
        f'<div class="arena-battle arena-{state}" data-seq="{seq}">'
        f'<div class="arena-prompt"><span class="arena-prompt-label">Prompt</span>'
        f"<p>{prompt}</p></div>"
        f'<div class="arena-pair">{"".join(sides)}</div>{verdict}{preloads}</div>'
    )


def message_html(text: str, kind: str = "info") -> str:
    return f'<div class="arena-battle arena-message arena-{kind}"><p>{html.escape(text)}</p></div>'


def status_text(session: dict | None, note: str = "") -> str:
    votes = session["votes"] if session else 0
    keys = " · ".join(
        f"<kbd>{KEYS[o]}</kbd> {label.lower()}" for o, label in OUTCOME_LABELS.items()
    )
    text = (
        f'<div class="arena-status"><span class="arena-counter">Votes this session: '
        f"<b>{votes}</b></span>"
        f'<span class="arena-keys">{keys} · <kbd>S</kbd> skip</span></div>'
    )
    if note:
        text += f'<div class="arena-note">{html.escape(note)}</div>'
    return text


# -- handlers (plain Python around arena.voting.battles) -------------------------------------------
def _login(request: gr.Request | None) -> str | None:
    return (getattr(request, "username", None) if request is not None else None) or None


class VoteHandlers:
    def __init__(self, store, matchmaker: Matchmaker, admission: Admission):
        self.store, self.settings, self.matchmaker = store, store.settings, matchmaker
        self.admission = admission

    def _serve(self, session: dict) -> BattleView | None:
        """A fresh battle for the session's rater (None when no pair is left)."""
        self.admission.allow_battle(session["rater"], session["group"])
        try:
            return serve_battle(
                self.store, session["rater"], self.matchmaker, client_group=session["group"]
            )
        except BattleError as exc:
            if exc.reason == "no_battle":
                return None
            raise

    def start(self, browser_id, request: gr.Request):
        """Open the page: the stored id if this server issued it, else a newly issued one."""
        group = self.admission.group(request)
        login = _login(request)
        try:
            if not login and not self.admission.is_issued(browser_id):
                browser_id = self.admission.issue(group)
            identity = self.admission.identity(browser_id, login)
        except BattleError as exc:
            return (gr.skip(), None, message_html(str(exc), "error"), status_text(None))
        session = {"rater": identity, "group": group, "current": None, "next": None}
        session.update(votes=0, seq=0)
        try:
            return (browser_id, *self._show(session, self._serve(session)))
        except BattleError as exc:
            return (browser_id, session, message_html(str(exc), "error"), status_text(session))

    def _show(self, session: dict, current: BattleView | None, note: str = ""):
        """Make ``current`` the battle on screen and preload a fresh next one."""
        session = dict(session, current=current, revealed=False, seq=session["seq"] + 1)
        if current is None:
            session["next"] = None
            msg = message_html(
                "There is nothing to vote on right now: you have seen every pair this arena "
                "can show, or it has fewer than two models with images. Thank you!"
            )
            return session, msg, status_text(session, note)
        try:
            session["next"] = self._serve(session)
        except BattleError:  # over the battle limit: no preload, the next click asks again
            session["next"] = None
        return (
            session,
            battle_html(current, session["seq"], preload=session["next"]),
            status_text(session, note),
        )

    def advance(self, session: dict | None):
        if not session:
            return gr.skip(), gr.skip(), gr.skip()
        try:
            nxt = session.get("next") or self._serve(session)
        except BattleError as exc:
            return session, gr.skip(), status_text(session, str(exc))
        return self._show(session, nxt)

    def vote(self, outcome: str, decision_ms, session: dict | None):
        if not session or session.get("current") is None or session.get("revealed"):
            return gr.skip(), gr.skip(), gr.skip()
        current: BattleView = session["current"]
        try:
            self.admission.allow_vote(session["group"])
            receipt = record_vote(
                self.store,
                current.token,
                session["rater"],
                outcome,
                decision_ms,
                matchmaker=self.matchmaker,
            )
        except BattleError as exc:
            if exc.reason in ("rate_limited", "daily_cap"):
                return session, gr.skip(), status_text(session, str(exc))
            # expired, or voted in another tab: move on to a fresh battle
            try:
                new = self._show(session, self._serve(session), str(exc))
            except BattleError as again:
                return session, gr.skip(), status_text(session, str(again))
            return new[0], new[1], new[2]
        session = dict(session, votes=session["votes"] + 1, revealed=True)
        reveal = (receipt.left_model, receipt.right_model) if self.settings.reveal_models else None
        page = battle_html(current, session["seq"], session["next"], reveal, outcome)
        return session, page, status_text(session)

    # -- API
    def _identity(self, rater_id, request: gr.Request | None) -> RaterIdentity:
        try:
            return self.admission.identity(rater_id, _login(request))
        except BattleError as exc:
            raise gr.Error(f"{exc.reason}: {exc}") from None

    def api_rater(self, request: gr.Request) -> dict:
        """Issue a rater id to this client: {rater_id}. Keep it; new ids are limited."""
        try:
            return {"rater_id": self.admission.issue(self.admission.group(request))}
        except BattleError as exc:
            raise gr.Error(f"{exc.reason}: {exc}") from None

    def api_battle(self, rater_id: str, request: gr.Request) -> dict:
        """Serve a battle to this rater: {token, prompt, left_image, right_image}."""
        session = {"rater": self._identity(rater_id, request)}
        session["group"] = self.admission.group(request)
        try:
            view = self._serve(session)
        except BattleError as exc:
            raise gr.Error(f"{exc.reason}: {exc}") from None
        if view is None:
            raise gr.Error("no_battle: there is nothing left to vote on for this rater.")
        return view.public()

    def api_vote(
        self,
        battle_token: str,
        rater_id: str,
        outcome: str,
        decision_ms: float | None,
        request: gr.Request,
    ) -> dict:
        """Vote on a battle served to this rater: outcome is left, right, tie or both_bad."""
        identity = self._identity(rater_id, request)
        try:
            self.admission.allow_vote(self.admission.group(request))
            receipt = record_vote(
                self.store,
                battle_token,
                identity,
                outcome,
                decision_ms,
                matchmaker=self.matchmaker,
            )
        except BattleError as exc:
            raise gr.Error(f"{exc.reason}: {exc}") from None
        out = {
            "stored": True,
            "vote_id": receipt.vote_id,
            "outcome": receipt.outcome,
            "flag": receipt.flag,
        }
        if self.settings.reveal_models:
            out.update(left_model=receipt.left_model, right_model=receipt.right_model)
        return out


def render(store) -> None:
    settings = store.settings
    matchmaker = Matchmaker.for_store(store)
    # Built now, at start-up: at 160k images and 1M votes it takes seconds, which
    # would otherwise fall on the first rater (and every rater queued behind them).
    matchmaker.index()
    if settings.gold_rate > 0:
        GoldPool.of(store)  # gold copies made now, not while a rater waits for a battle
    handlers = VoteHandlers(store, matchmaker, Admission.of(store))
    # A fixed secret (Gradio's default is random per process): the id stored in the browser
    # stays readable after a restart and on every server process. The page encrypts with it,
    # so it is no secret from the rater; it only has to stay the same.
    browser_id = gr.BrowserState(
        "", storage_key="t2i-arena-rater", secret=store.server_secret("browser_state")[:32]
    )
    session = gr.State(None)
    decision = gr.Number(value=None, visible=False)

    battle = gr.HTML(
        message_html("Loading a battle …"),
        elem_id="arena-battle",
        js_on_load=JS_ON_LOAD,
    )
    with gr.Row(elem_id="arena-buttons", equal_height=True):
        buttons = {}
        for outcome in BUTTON_ORDER:
            label = OUTCOME_LABELS[outcome]
            text = f"{KEYS[outcome]}  {label}" if outcome != "right" else f"{label}  →"
            buttons[outcome] = gr.Button(
                text,
                elem_id=f"vote-{outcome}",
                variant="primary" if outcome in ("left", "right") else "secondary",
                elem_classes=["arena-vote-button"],
            )
        skip = gr.Button("Skip  (S)", elem_id="vote-skip", variant="secondary", size="sm")
    status = gr.HTML(status_text(None), elem_id="arena-status")

    outputs = [session, battle, status]
    root = Context.root_block
    root.load(
        handlers.start,
        inputs=[browser_id],
        outputs=[browser_id, *outputs],
        api_visibility="private",
        show_progress="hidden",
    )
    delay = DELAY_JS if settings.reveal_models else None
    for outcome, button in buttons.items():
        button.click(
            lambda d, s, o=outcome: handlers.vote(o, d, s),
            inputs=[decision, session],
            outputs=outputs,
            js=DECISION_JS,
            api_visibility="private",
            show_progress="hidden",
            trigger_mode="once",
        ).then(
            lambda s: handlers.advance(s) if s and s.get("revealed") else (s, gr.skip(), gr.skip()),
            inputs=[session],
            outputs=outputs,
            js=delay,
            api_visibility="private",
            show_progress="hidden",
        )
    skip.click(
        handlers.advance,
        inputs=[session],
        outputs=outputs,
        api_visibility="private",
        show_progress="hidden",
        trigger_mode="once",
    )
    gr.api(handlers.api_rater, api_name="rater")
    gr.api(handlers.api_battle, api_name="battle")
    gr.api(handlers.api_vote, api_name="vote")
