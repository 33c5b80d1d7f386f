"""The Review tab (Admin app, Review app): the gallery, the blind review and failure flags.

Never part of the raters' app: the gallery ties every image to its model. Three views
(:mod:`arena.reports.gallery`) -- by prompt, by model, the blind sample -- each with a
panel to open an image at full size and save a verdict on it: failure modes from the
``failure_modes`` setting, a note, "no failure" when no box is ticked
(``Store.save_review``; blind-review verdicts are kept apart from the others). Verdicts are
attributed to the login (``admin`` in the Admin app, the reviewer's name in the Review
app). The last sub-tab shows the failure rates they make (:mod:`arena.reports.failures`).
Every handler is a plain function of the store and the reviewer; the Gradio wiring only
passes the login in.
"""

from __future__ import annotations

import gradio as gr

from arena.reports import gallery as gv
from arena.reports.frames import filter_options
from arena.stats.failures import NO_FAILURE
from arena.storage.errors import StoreError
from arena.ui import failure_section
from arena.ui.filter_row import ALL, change_triggers, prompt_widgets
from arena.ui.review_images import ImageHandles

TITLE = "Review"
CSS = gv.CSS
BROKEN_CHOICES = {"not broken": False, "broken only": True, "broken or not": None}
INTRO = (
    "Look at the images side by side and flag failures. **By prompt**: every model's image "
    "of one prompt and seed, with metric values and vote counts. **By model**: one model's "
    "images, filtered and sorted on any metric. **Blind review**: a random sample (the same "
    "number per model, seeded) without model names, metrics or votes: its verdicts give the "
    "unbiased *blind sample* failure rate. Click an image to open it full size; pick its "
    "number below the grid to judge it. A verdict with no box ticked means *no failure*."
)


def reviewer_of(request: gr.Request | None) -> str:
    """The login the request belongs to; a reviewer must be logged in."""
    name = getattr(request, "username", None) if request is not None else None
    if not name:
        raise StoreError("log in to review: verdicts are attributed to the login.")
    return str(name)


def _choices(view: gv.GalleryView):
    return gr.update(choices=list(zip(view.labels, range(1, len(view.labels) + 1), strict=True)))


def _selected(ids: list[int], number) -> int | None:
    try:
        k = int(number)
    except (TypeError, ValueError):
        return None
    return ids[k - 1] if ids and 1 <= k <= len(ids) else None


def verdict_of(store, image_id: int | None, reviewer: str, blind: bool) -> tuple[list, str]:
    """(modes ticked, note) of the reviewer's current verdict of this kind on the image."""
    if image_id is None:
        return [], ""
    flags = store.image_flags_frame([image_id])
    mine = flags[(flags["reviewer"] == reviewer) & (flags["blind"] == blind)]
    modes = [m for m in mine["flag"] if m != NO_FAILURE]
    return modes, str(mine["note"].iloc[0]) if len(mine) else ""


def save_verdict(store, ids, number, modes, note, reviewer: str, blind: bool) -> str:
    image_id = _selected(ids, number)
    if image_id is None:
        return "Pick an image number first."
    try:
        stored = store.save_review(image_id, reviewer, modes or [], note or "", blind=blind)
    except StoreError as exc:
        return f"**Not saved:** {exc}"
    what = "no failure" if stored == (NO_FAILURE,) else ", ".join(stored)
    kind = "blind verdict" if blind else "verdict"
    return f"Saved your {kind} on image #{int(number)}: {what}."


def remove_verdict(store, ids, number, reviewer: str, blind: bool) -> str:
    image_id = _selected(ids, number)
    if image_id is None:
        return "Pick an image number first."
    removed = store.remove_review(image_id, reviewer, blind=blind)
    return (
        f"Removed your verdict on image #{int(number)}."
        if removed
        else f"You have no {'blind ' if blind else ''}verdict on image #{int(number)}."
    )


def _flag_panel(store, handles, ids, blind: bool, redraw):
    """Image number, full-size view, modes, note, Save / Remove; ``redraw`` = (fn, inputs,
    outputs) redraws the view after a change. Returns the number dropdown."""
    with gr.Row():
        number = gr.Dropdown(label="Image #", choices=[], scale=1)
        modes = gr.CheckboxGroup(
            list(store.failure_modes), label="Failure modes (none ticked: no failure)", scale=4
        )
    note = gr.Textbox(label="Note (needed for 'other')", max_lines=3)
    with gr.Row():
        save = gr.Button("Save verdict", variant="primary")
        remove = gr.Button("Remove my verdict")
    status = gr.Markdown()
    full = gr.HTML()

    def pick(ids_now, k, request: gr.Request):
        image_id = _selected(ids_now, k)
        ticked, text = verdict_of(store, image_id, reviewer_of(request), blind)
        return ticked, text, gv.full_size_html(handles, image_id)

    number.change(pick, [ids, number], [modes, note, full], api_visibility="private")

    def saved(ids_now, k, ticked, text, request: gr.Request):
        return save_verdict(store, ids_now, k, ticked, text, reviewer_of(request), blind)

    def removed(ids_now, k, request: gr.Request):
        return remove_verdict(store, ids_now, k, reviewer_of(request), blind)

    fn, inputs, outputs = redraw
    after = save.click(saved, [ids, number, modes, note], status, api_visibility="private").then(
        fn, inputs, outputs, api_visibility="private"
    )
    if blind:  # the next image of the sample, once this one is judged

        def advance(ids_now, k, message):
            if not str(message).startswith("Saved") or _selected(ids_now, k) is None:
                return gr.update()
            return int(k) + 1 if int(k) < len(ids_now) else gr.update()

        after.then(advance, [ids, number, status], number, api_visibility="private")
    remove.click(removed, [ids, number], status, api_visibility="private").then(
        fn, inputs, outputs, api_visibility="private"
    ).then(pick, [ids, number], [modes, note, full], api_visibility="private")
    return number


def _by_prompt(store, handles):
    ids = gr.State([])
    prompt_ids = store.gallery_prompt_ids()
    with gr.Row():
        prompt = gr.Number(
            label="Prompt id",
            precision=0,
            value=int(prompt_ids[0]) if len(prompt_ids) else None,
        )
        seed = gr.Textbox(label="Seed (empty: the prompt's first)")
        previous = gr.Button("◀ Previous prompt", size="sm")
        following = gr.Button("Next prompt ▶", size="sm")
    header, grid = gr.Markdown(), gr.HTML()

    def draw(prompt_id, seed_text):
        if prompt_id in (None, ""):  # the first prompt with images (imported since start too)
            known = store.gallery_prompt_ids()
            if not len(known):
                message = "No images yet: import or generate some (`arena import-images`)."
                return message, "", [], gr.update(choices=[])
            prompt_id = int(known[0])
        try:
            view = gv.prompt_view(store, handles, prompt_id, seed_text)
        except gv.GalleryError as exc:
            return f"**Cannot show the prompt:** {exc}", "", [], gr.update(choices=[])
        return view.header, view.html, view.image_ids, _choices(view)

    def step(prompt_id, direction: int):
        known = store.gallery_prompt_ids()
        if not len(known):
            return prompt_id
        current = int(prompt_id) if prompt_id is not None else int(known[0])
        later = known[known > current] if direction > 0 else known[known < current][::-1]
        return int(later[0]) if len(later) else current

    outputs = [header, grid, ids]
    number = _flag_panel(
        store, handles, ids, False, (lambda p, s: draw(p, s)[:3], [prompt, seed], outputs)
    )
    for trigger in (prompt.submit, seed.submit):
        trigger(draw, [prompt, seed], [*outputs, number], api_visibility="private")
    previous.click(lambda p: step(p, -1), prompt, prompt, api_visibility="private").then(
        draw, [prompt, seed], [*outputs, number], api_visibility="private"
    )
    following.click(lambda p: step(p, 1), prompt, prompt, api_visibility="private").then(
        draw, [prompt, seed], [*outputs, number], api_visibility="private"
    )
    return draw, [prompt, seed], [*outputs, number]


def _by_model(store, handles):
    ids = gr.State([])
    options = filter_options(store)
    metrics = store.gallery_metrics()
    names = store.model_names()
    with gr.Row():
        # custom values: models and metrics added after the server started
        model = gr.Dropdown(
            names, value=names[0] if names else None, label="Model", allow_custom_value=True
        )
        sort = gr.Dropdown(
            [gv.SORT_BY_ID, *metrics],
            value=gv.SORT_BY_ID,
            label="Sort by",
            allow_custom_value=True,
        )
        descending = gr.Checkbox(label="Descending", value=False)
        broken = gr.Dropdown(list(BROKEN_CHOICES), value="not broken", label="Broken")
    with gr.Row():
        category = gr.Dropdown([ALL, *options["category"]], value=ALL, label="Prompt category")
        prompt_set = gr.Dropdown([ALL, *options["prompt_set"]], value=ALL, label="Prompt set")
        metric = gr.Dropdown(
            ["(none)", *metrics], value="(none)", label="Filter on metric", allow_custom_value=True
        )
        low = gr.Number(label="from")
        high = gr.Number(label="to")
    with gr.Row():
        page = gr.Number(label="Page", value=1, precision=0)
        page_size = gr.Number(label="Images per page", value=gv.PAGE_SIZE, precision=0)
        show = gr.Button("Show", variant="primary")
    header, grid = gr.Markdown(), gr.HTML()
    inputs = [model, sort, descending, metric, low, high, category, prompt_set, broken]
    inputs += [page, page_size]

    def draw(name, by, desc, on, lo, hi, cat, pset, brk, pg, size):
        def pick(value):
            return None if value in (None, "", ALL, "(none)") else value

        try:
            view = gv.model_view(
                store,
                handles,
                name,
                by or gv.SORT_BY_ID,
                bool(desc),
                pick(on),
                lo,
                hi,
                pick(cat),
                pick(pset),
                BROKEN_CHOICES.get(brk, False),
                pg,
                size,
            )
        except gv.GalleryError as exc:
            return f"**Cannot show the model's images:** {exc}", "", [], gr.update(choices=[])
        return view.header, view.html, view.image_ids, _choices(view)

    outputs = [header, grid, ids]
    number = _flag_panel(store, handles, ids, False, (lambda *v: draw(*v)[:3], inputs, outputs))
    show.click(draw, inputs, [*outputs, number], api_visibility="private")
    return draw, inputs, [*outputs, number]


def _blind(store, handles):
    ids = gr.State([])
    with gr.Row():
        size = gr.Number(label="Sample size", value=50, precision=0)
        seed = gr.Number(label="Seed", value=int(store.settings.seed), precision=0)
        start = gr.Button("Draw a sample", variant="primary")
    header, grid = gr.Markdown("Draw a sample to start."), gr.HTML()

    def sample(n, s, request: gr.Request):
        reviewer = reviewer_of(request)
        try:
            picked = gv.draw_blind_sample(store, reviewer, n, s)
        except (gv.GalleryError, StoreError) as exc:
            return f"**Cannot draw a sample:** {exc}", "", [], gr.update(choices=[])
        view = gv.blind_view(store, handles, picked, reviewer)
        return view.header, view.html, view.image_ids, _choices(view)

    def redraw(ids_now, request: gr.Request):
        view = gv.blind_view(store, handles, ids_now, reviewer_of(request))
        return view.header, view.html, view.image_ids

    outputs = [header, grid, ids]
    number = _flag_panel(store, handles, ids, True, (redraw, [ids], outputs))
    start.click(sample, [size, seed], [*outputs, number], api_visibility="private")


def render(store, held_out: bool = False):
    """The tab; returns the failure-rate refresh (fn, inputs, outputs) for when it opens.
    ``held_out`` (the Admin app): the failure rates' held-out sets filter; reviewers do
    not get it (which prompt sets are held out is the operators')."""
    handles = ImageHandles.of(store)
    gr.Markdown(INTRO)
    with gr.Tab("By prompt"):
        draw, inputs, outputs = _by_prompt(store, handles)
    with gr.Tab("By model"):
        _by_model(store, handles)
    with gr.Tab("Blind review"):  # handles of their own: never the browse views'
        _blind(store, ImageHandles.of(store, blind=True))
    with gr.Tab("Failure rates") as rates_tab:
        with gr.Row():
            prompts = prompt_widgets(filter_options(store), held_out)
        note = gr.Markdown()
        summary = gr.Dataframe(interactive=False, label="Failure rates per model", wrap=True)
        by_mode = gr.Dataframe(interactive=False, label="By failure mode", wrap=True)
        rate_outputs = [note, summary, by_mode]

        def rates(*values):
            return failure_section.rates_outputs(store, *values)

        for trigger in (*change_triggers(prompts), rates_tab.select):
            trigger(rates, prompts, rate_outputs, api_visibility="private")
    return draw, inputs, outputs
