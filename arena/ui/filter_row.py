"""The filter row the Leaderboard and Agreement tabs share, and its values as :class:`Filters`.

The row's widgets, in :data:`FIELDS` order, are every tab handler's first inputs; a handler
reads them with :func:`filters_of` (positionally, or by name). Everything the row can
pick restricts which votes and images are read, never what is shown of them.
"""

from __future__ import annotations

import gradio as gr

from arena.reports.frames import Filters, ReportError
from arena.storage.vocabulary import RATER_KINDS

ALL = "(all)"
#: How the Raters dropdown names a rater group (its other choices are the kinds).
GROUP_PREFIX = "group: "
#: The row's values, in order: what :func:`filters_of` reads.
FIELDS = ("category", "prompt_set", "tag", "held_out", "rater_kind", "since", "until")
#: The prompt filters among them (failure rates follow these only: they are over images).
PROMPT_FIELDS = FIELDS[:4]
#: The row's values with nothing picked, for a handler called outside the page.
UNFILTERED = (ALL, ALL, ALL, ALL, ALL, "", "")
#: The Held-out dropdown's labels and the filter value each stands for.
HELD_OUT_LABELS = {ALL: None, "held-out sets only": "only", "exclude held-out sets": "exclude"}


def named(values: tuple, given: dict, fields: tuple[str, ...] = FIELDS) -> dict:
    """The row's values by name: positional ``values`` in ``fields`` order, or keywords
    (``given``); absent ones are None. Too many values, an unknown name or a value given
    both ways is a :class:`TypeError` (a caller's bug, not a filter)."""
    if len(values) > len(fields):
        raise TypeError(f"{len(values)} values for the {len(fields)} fields {fields}.")
    unknown = set(given) - set(fields)
    twice = set(given) & set(fields[: len(values)])
    if unknown or twice:
        raise TypeError(f"unknown {sorted(unknown)} or twice-given {sorted(twice)} values.")
    out = dict.fromkeys(fields)
    out.update(zip(fields, values, strict=False))
    out.update(given)
    return out


def filters_of(*values, **given) -> Filters:
    """The :class:`Filters` of the row's values (``(all)`` or empty: no filter); raises
    :class:`arena.reports.frames.ReportError` with what to fix."""
    v = named(values, given)
    for field, value in v.items():  # a page sends text; anything else is a forged request
        if value is not None and not isinstance(value, str):
            raise ReportError(f"filter {field}: expected text, got {type(value).__name__}.")

    def pick(value):
        return None if value in (None, "", ALL) else value

    raters = pick(v["rater_kind"])  # a kind, or "group: NAME" (the Raters dropdown)
    group = (
        raters[len(GROUP_PREFIX) :].strip() if raters and raters.startswith(GROUP_PREFIX) else None
    )
    held_out = pick(v["held_out"])
    filters = Filters(
        category=pick(v["category"]),
        prompt_set=pick(v["prompt_set"]),
        rater_kind=None if group is not None else raters,
        since=v["since"],
        until=v["until"],
        rater_group=group,
        held_out=HELD_OUT_LABELS.get(held_out, held_out),
        tag=pick(v["tag"]),
    )
    filters.key()  # parses the dates
    return filters


def rater_choices(options: dict[str, list[str]]) -> list[str]:
    """The Raters dropdown: all (every kind but judges), each kind, each rater group."""
    groups = [f"{GROUP_PREFIX}{g}" for g in options.get("rater_group", [])]
    return [ALL, *RATER_KINDS, *groups]


def prompt_widgets(options: dict[str, list[str]], held_out: bool = True) -> list:
    """The prompt filters' widgets (:data:`PROMPT_FIELDS` order), in the current row.
    ``held_out=False`` (the raters' app): no held-out choice, a fixed None in its place --
    which prompt sets the operators hold out is theirs to know."""
    return [
        gr.Dropdown(
            [ALL, *options["category"]], value=ALL, label="Prompt category", allow_custom_value=True
        ),
        gr.Dropdown(
            [ALL, *options["prompt_set"]], value=ALL, label="Prompt set", allow_custom_value=True
        ),
        gr.Dropdown(
            [ALL, *options.get("tag_choices", [])],
            value=ALL,
            label="Prompt tag",
            allow_custom_value=True,  # beyond the most common tags: typed
        ),
        gr.Dropdown(list(HELD_OUT_LABELS), value=ALL, label="Held-out sets")
        if held_out
        else gr.State(None),
    ]


def filter_row(options: dict[str, list[str]], held_out: bool = True) -> tuple[list, gr.Button]:
    """(the row's widgets in :data:`FIELDS` order, a refresh button); ``held_out`` as for
    :func:`prompt_widgets`."""
    with gr.Row():
        prompts = prompt_widgets(options, held_out)
        rater_kind = gr.Dropdown(rater_choices(options), value=ALL, label="Raters")
        since = gr.Textbox(label="From (UTC date)", placeholder="2025-01-31")
        until = gr.Textbox(label="Until (inclusive)", placeholder="2025-02-28")
    refresh = gr.Button("Refresh", size="sm")
    return [*prompts, rater_kind, since, until], refresh


def change_triggers(widgets: list) -> list:
    """When the row's values apply: a dropdown on change, a date on Enter or when the
    box loses focus (not on every keystroke)."""
    triggers = []
    for widget in widgets:
        if isinstance(widget, gr.State):
            continue
        if isinstance(widget, gr.Textbox):
            triggers += [widget.submit, widget.blur]
        else:
            triggers.append(widget.change)
    return triggers
