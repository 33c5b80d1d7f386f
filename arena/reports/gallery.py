"""The gallery's views: what the Review tab shows, as data and as HTML.

Three views of the images, each a :class:`GalleryView` (a header, the cards' HTML and the
image ids in the order shown, so that "image #3" means one image):

* :func:`prompt_view` -- every model's image of one prompt and seed, side by side at one
  size (the display renditions), with per-image metric values, vote counts and flags;
* :func:`model_view` -- one model's images, filtered by category, prompt set, broken or
  not and a metric's range, sorted on any metric, one page at a time;
* :func:`blind_view` -- a seeded random sample (:func:`arena.stats.failures.blind_sample`)
  with no model name, metric or vote count: only the prompt and the image.

Images are linked through :class:`arena.ui.review_images.ImageHandles` (opaque handles,
an authenticated route); every text is escaped. Reads go through the store's gallery
verbs, a few indexed queries per view (``benchmarks/gallery.py``).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from arena.stats.failures import NO_FAILURE, blind_sample

#: The model view's page size when none is given.
PAGE_SIZE = 24
MAX_PAGE_SIZE = 200
MAX_SAMPLE = 1000
SORT_BY_ID = "image id"

CSS = """
.rv-grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(var(--rv-size,240px),1fr));
gap:12px}
.rv-card{margin:0;border:1px solid #ddd;border-radius:6px;padding:6px;background:#fafafa}
.rv-card img{width:100%;aspect-ratio:var(--rv-aspect,1);object-fit:contain;display:block;
background:#808080}
.rv-card figcaption{font-size:.8em;line-height:1.35;margin-top:4px;word-break:break-word}
.rv-n{font-weight:700}.rv-broken{color:#a00;font-weight:700}.rv-flag{color:#a04000}
.rv-full img{max-width:100%;height:auto;border:1px solid #ccc}
"""


class GalleryError(ValueError):
    """A view that cannot be drawn (an unknown prompt, model or metric); says what to fix."""


@dataclass
class GalleryView:
    header: str  # Markdown
    html: str
    image_ids: list[int] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # one per image: "#1 model" or "#1"


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    magnitude = abs(float(value))
    return f"{value:.3g}" if magnitude < 1000 else f"{value:,.0f}"


def _flag_text(flags: pd.DataFrame, blind_only_of: str | None = None) -> dict[int, str]:
    """image id -> "hands, text rendering (ann); no failure (bob, blind)"."""
    out: dict[int, list[str]] = {}
    if flags is None or flags.empty:
        return {}
    if blind_only_of is not None:
        flags = flags[(flags["reviewer"] == blind_only_of) & flags["blind"]]
    for (image_id, reviewer, blind), rows in flags.groupby(
        ["image_id", "reviewer", "blind"], sort=True
    ):
        modes = [m for m in rows["flag"] if m != NO_FAILURE]
        what = ", ".join(modes) if modes else "no failure"
        who = "you" if blind_only_of is not None else reviewer + (", blind" if blind else "")
        note = str(rows["note"].iloc[0] or "")
        out.setdefault(int(image_id), []).append(
            f"{what} ({who})" + (f": “{note[:120]}”" if note else "")
        )
    return {k: "; ".join(v) for k, v in out.items()}


def cards_html(
    cards: pd.DataFrame, handles, aspect: float = 1.0, size_px: int = 240, blind: bool = False
) -> str:
    """The grid: one card per row of ``cards`` (``image_id``, ``label``, ``lines``: a list
    of text lines, ``flags``: text, ``broken``), each image at the same size."""
    if cards.empty:
        return "<p><em>No images.</em></p>"
    parts = [f'<div class="rv-grid" style="--rv-size:{int(size_px)}px;--rv-aspect:{aspect:.4f}">']
    for k, row in enumerate(cards.itertuples(index=False), start=1):
        lines = [f'<span class="rv-n">#{k}</span> {html.escape(row.label)}'.rstrip()]
        if not blind and isinstance(row.broken, str) and row.broken:
            lines.append(f'<span class="rv-broken">broken: {html.escape(row.broken)}</span>')
        lines += [html.escape(line) for line in row.lines]
        if row.flags:
            lines.append(f'<span class="rv-flag">flags: {html.escape(row.flags)}</span>')
        full = html.escape(handles.url(row.image_id, full=True))
        shown = html.escape(handles.url(row.image_id))
        parts.append(
            f'<figure class="rv-card" data-n="{k}"><a href="{full}" target="_blank" '
            f'rel="noopener" title="open full size"><img src="{shown}" alt="image {k}" '
            f'loading="lazy"></a><figcaption>{"<br>".join(lines)}</figcaption></figure>'
        )
    parts.append("</div>")
    return "".join(parts)


def _metric_lines(scores: pd.DataFrame) -> dict[int, str]:
    if scores.empty:
        return {}
    out: dict[int, list[str]] = {}
    for row in scores.itertuples(index=False):
        out.setdefault(int(row.image_id), []).append(f"{row.metric} {_fmt(row.value)}")
    return {k: " · ".join(v) for k, v in out.items()}


def _vote_lines(votes: pd.DataFrame) -> dict[int, str]:
    out = {}
    for row in votes.itertuples(index=False):
        text = f"votes {row.votes}"
        if row.votes:
            text += f": {row.wins} won, {row.losses} lost"
            text += f", {row.ties} tie" if row.ties else ""
            text += f", {row.both_bad} both bad" if row.both_bad else ""
        out[int(row.image_id)] = text
    return out


def _annotated(store, images: pd.DataFrame, label, extra=None) -> pd.DataFrame:
    """``images`` as cards: label, lines (``extra(row)`` first, then metrics and votes),
    flags, broken."""
    ids = images["image_id"].astype(int).tolist()
    metrics = _metric_lines(store.image_scores(ids))
    votes = _vote_lines(store.image_vote_counts(ids))
    flags = _flag_text(store.image_flags_frame(ids))
    rows = []
    for row in images.itertuples(index=False):
        i = int(row.image_id)
        lines = [*(extra(row) if extra else []), metrics.get(i, "no metric scores"), votes[i]]
        rows.append((i, label(row), lines, flags.get(i, ""), row.broken))
    return pd.DataFrame(rows, columns=["image_id", "label", "lines", "flags", "broken"])


def _aspect(store) -> float:
    box = store.images.renditions.box if store.images.renditions is not None else (1, 1)
    return box[0] / box[1]


def prompt_view(store, handles, prompt_id: int, seed=None) -> GalleryView:
    """Every model's images of one prompt and seed (``seed`` None: the prompt's first
    seed), by model name."""
    try:
        prompt_id = int(prompt_id)
    except (TypeError, ValueError):
        raise GalleryError(f"prompt id {prompt_id!r}: expected a whole number.") from None
    seeds = store.gallery_seeds(prompt_id)
    if not seeds:
        raise GalleryError(
            f"prompt {prompt_id} has no images of any model; pick another prompt id "
            "(Previous / Next step through the prompts that have images)."
        )
    if seed in (None, ""):
        seed = seeds[0]
    else:
        try:
            seed = int(seed)
        except (TypeError, ValueError):
            raise GalleryError(f"seed {seed!r}: expected a whole number.") from None
        if seed not in seeds:
            raise GalleryError(
                f"prompt {prompt_id} has no images with seed {seed}; its seeds: "
                f"{', '.join('none' if s is None else str(s) for s in seeds)}."
            )
    images = store.gallery_images(prompt_id=prompt_id, seed=seed)
    first = images.iloc[0]
    cards = _annotated(store, images, label=lambda r: r.model)
    header = (
        f"**Prompt {prompt_id}** ({html.escape(str(first.prompt_set))} / "
        f"{html.escape(str(first.external_id))}, category "
        f"{html.escape(str(first.category or '–'))}) · seed {'none' if seed is None else seed}"
        f" · {len(images)} image(s) of {images['model'].nunique()} model(s)\n\n"
        f"> {html.escape(str(first.text))}"
    )
    return GalleryView(
        header,
        cards_html(cards, handles, _aspect(store)),
        cards["image_id"].tolist(),
        [f"#{k} {m}" for k, m in enumerate(cards["label"], start=1)],
    )


def _page(value, default: int, name: str, low: int, high: int) -> int:
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise GalleryError(f"{name} {value!r}: expected a whole number.") from None
    if not low <= number <= high:
        raise GalleryError(f"{name} {number}: expected {low} to {high}.")
    return number


def model_view(
    store,
    handles,
    model: str,
    sort: str = SORT_BY_ID,
    descending: bool = False,
    filter_metric: str | None = None,
    low: float | None = None,
    high: float | None = None,
    category: str | None = None,
    prompt_set: str | None = None,
    broken: bool | None = False,
    page: int = 1,
    page_size: int = PAGE_SIZE,
) -> GalleryView:
    """One model's images under the filters, sorted by ``sort`` (a metric, or the image
    id), ``page_size`` at a time. ``broken`` None shows broken and intact images alike.
    Images without a value of the sort metric come last; the metric filter keeps only
    images with a value in [low, high]."""
    if model not in store.model_names():
        raise GalleryError(
            f"unknown model {model!r}; pick one of {', '.join(store.model_names()) or 'none'}."
        )
    page = _page(page, 1, "page", 1, 10**9)
    page_size = _page(page_size, PAGE_SIZE, "page size", 1, MAX_PAGE_SIZE)
    for name, value in (("sort by", sort), ("filter metric", filter_metric)):
        if value not in (None, "", SORT_BY_ID) and not store.has_metric(value):
            metrics = store.gallery_metrics()  # the full scan only to say what exists
            raise GalleryError(
                f"{name} {value!r}: not a scored metric; pick one of "
                f"{', '.join(metrics) or 'none (run arena score)'}."
            )
    ids = pd.Series(store.model_image_ids(model, category, prompt_set, broken))
    if filter_metric:
        values = store.metric_values(filter_metric, model).set_index("image_id")["value"]
        value = ids.map(values).astype(float)
        keep = value.notna()
        if low is not None and not (isinstance(low, float) and math.isnan(low)):
            keep &= value >= float(low)
        if high is not None and not (isinstance(high, float) and math.isnan(high)):
            keep &= value <= float(high)
        ids = ids[keep.to_numpy()]
    if sort and sort != SORT_BY_ID:
        values = store.metric_values(sort, model).set_index("image_id")["value"]
        order = pd.DataFrame({"image_id": ids.to_numpy(), "key": ids.map(values).astype(float)})
        order = order.sort_values(
            ["key", "image_id"], ascending=[not descending, True], na_position="last"
        )
        ids = order["image_id"]
    else:
        ids = ids.sort_values(ascending=not descending)
    total = len(ids)
    pages = max(1, math.ceil(total / page_size))
    page = min(page, pages)
    page_ids = ids.iloc[(page - 1) * page_size : page * page_size].astype(int).tolist()
    shown = store.gallery_images(image_ids=page_ids).set_index("image_id").loc[page_ids]
    shown = shown.reset_index()
    cards = _annotated(
        store,
        shown,
        label=lambda r: f"prompt {r.prompt_id}, seed {'none' if pd.isna(r.seed) else r.seed}",
        extra=lambda r: [str(r.text)[:160]],
    )
    where = ", ".join(
        p
        for p in (
            f"category {category}" if category else "",
            f"prompt set {prompt_set}" if prompt_set else "",
            {True: "broken only", False: "not broken", None: "broken or not"}[broken],
            f"{filter_metric} in [{_fmt(low)}, {_fmt(high)}]" if filter_metric else "",
        )
        if p
    )
    order = f"{sort or SORT_BY_ID} {'descending' if descending else 'ascending'}"
    header = (
        f"**{html.escape(model)}** · {total:,} image(s) ({html.escape(where)}) · sorted by "
        f"{html.escape(order)} · page {page} of {pages}"
    )
    return GalleryView(
        header,
        cards_html(cards, handles, _aspect(store)),
        cards["image_id"].tolist(),
        [f"#{k}" for k in range(1, len(cards) + 1)],
    )


def draw_blind_sample(store, reviewer: str, size: int, seed: int) -> list[int]:
    """The ids of a new blind sample for ``reviewer`` (:func:`blind_sample`, seeded by
    ``seed``, passing over the images the reviewer already judged blind)."""
    size = _page(size, 50, "sample size", 1, MAX_SAMPLE)
    seed = _page(seed, 0, "seed", 0, 2**63 - 1)
    pool = store.review_pool()
    if pool.empty:
        raise GalleryError("no images to sample: import or generate images of a model first.")
    picked = blind_sample(
        pool["image_id"].to_numpy(),
        pool["model"].to_numpy(),
        size,
        np.random.default_rng(seed),
        skip=store.reviewed_blind(reviewer),
    )
    if not len(picked):
        raise GalleryError(
            f"{reviewer} has judged every image blind already: nothing left to sample."
        )
    return picked.tolist()


def blind_view(store, handles, image_ids: list[int], reviewer: str) -> GalleryView:
    """The sample's images in the sample's order: the prompt and the reviewer's own blind
    verdict under each, no model, metric or vote count."""
    if not image_ids:
        return GalleryView("Draw a sample to start.", "")
    images = store.gallery_images(image_ids=image_ids).set_index("image_id")
    images = images.loc[[i for i in image_ids if i in images.index]].reset_index()
    mine = _flag_text(store.image_flags_frame(image_ids), blind_only_of=reviewer)
    cards = pd.DataFrame(
        {
            "image_id": images["image_id"],
            "label": "",
            "lines": [[str(t)] for t in images["text"]],
            "flags": [mine.get(int(i), "") for i in images["image_id"]],
            "broken": None,
        }
    )
    done = sum(1 for i in images["image_id"] if int(i) in mine)
    header = (
        f"**Blind review** · {len(images)} image(s), {done} judged by you · model names, "
        "metrics and votes are hidden; save a verdict on each (no box ticked: no failure)."
    )
    return GalleryView(
        header,
        cards_html(cards, handles, _aspect(store), blind=True),
        images["image_id"].astype(int).tolist(),
        [f"#{k}" for k in range(1, len(images) + 1)],
    )


def full_size_html(handles, image_id: int | None) -> str:
    """The selected image full size (``handles``' full view: the original for the browse
    views' handles, a large rendition for the blind review's), linked to open it alone."""
    if image_id is None:
        return ""
    url = html.escape(handles.url(image_id, full=True))
    return (
        f'<div class="rv-full"><a href="{url}" target="_blank" rel="noopener">'
        f'<img src="{url}" alt="selected image, full size"></a></div>'
    )
