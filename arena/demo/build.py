"""The offline demo: procedural "models", a project-written prompt set, simulated raters.

Nothing here needs weights or a network. ``data/demo_prompts.csv`` holds 42
booru-style tag prompts (``1girl, red hair, blue dress, outdoors``) that this
module parses into simple scenes of shapes and colours. Four procedural
models of deliberately different quality render each prompt at 3 seeds:

=================  ===========================================================
model              what it does (and its hidden strength, DEMO_TRUE_STRENGTH)
=================  ===========================================================
faithful           draws every tag with its colour                       (1.0)
blurry             faithful, then a gaussian blur of radius 3            (0.4)
wrong-colours      faithful, then every hue rotated by 90-270 degrees    (-0.2)
missing-objects    drops about half of the tagged objects (at least one) (-0.6)
=================  ===========================================================

The same (prompt, seed) gives all four models the same layout, so they differ
only by their defect. A fifth set, ``demo-real`` (kind ``reference``), is the
faithful renderer at other seeds: the "real images" of model-level metrics
(FID/KID against a reference set); it is never shown to raters.

Simulated raters (kind ``simulated``) vote by a Davidson (Bradley-Terry with
ties) model on the hidden strengths: P(a wins) = pi_a / D, P(no decision) =
nu * sqrt(pi_a * pi_b) / D with pi = exp(strength); a no-decision is
"both_bad" with probability sigmoid(-(s_a + s_b)) and a "tie" otherwise. A
Bradley-Terry fit that counts ties as half a win each way recovers the order
of DEMO_TRUE_STRENGTH. Everything is deterministic from the seed.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from sqlalchemy import func, insert, select

from arena.reports.stand_in import STAND_IN_TAG
from arena.storage import db
from arena.storage.store import Store, StoreError

DEMO_PROMPTS = Path(__file__).resolve().parents[2] / "data" / "demo_prompts.csv"
DEMO_PROMPT_SET = "demo"
DEMO_SEEDS = (0, 1, 2)
REFERENCE_MODEL = "demo-real"
REFERENCE_SEEDS = (100, 101)
IMAGE_SIZE = 256

# Hidden ground truth of the simulated raters (Bradley-Terry log-strengths).
DEMO_TRUE_STRENGTH = {
    "faithful": 1.0,
    "blurry": 0.4,
    "wrong-colours": -0.2,
    "missing-objects": -0.6,
}
DEMO_MODELS = {
    "faithful": "Draws every tag of the prompt with its colour (the best demo model).",
    "blurry": "The faithful scene, then a gaussian blur of radius 3.",
    "wrong-colours": "The faithful scene, then every hue rotated by 90-270 degrees.",
    "missing-objects": "Drops about half of the tagged objects (always at least one).",
}

COLOURS = {
    "red": (214, 40, 40),
    "blue": (40, 90, 214),
    "green": (46, 160, 67),
    "yellow": (245, 208, 40),
    "pink": (240, 128, 170),
    "purple": (130, 60, 180),
    "white": (245, 245, 245),
    "black": (25, 25, 30),
    "orange": (240, 130, 30),
    "brown": (120, 72, 36),
    "blonde": (240, 214, 120),
    "silver": (192, 192, 205),
    "grey": (128, 128, 128),
}
DEFAULT_COLOUR = {
    "hair": "brown",
    "dress": "grey",  # untagged clothes are plain grey, so a dropped colour always shows
    "shirt": "grey",
    "hat": "black",
    "house": "yellow",
    "balloon": "red",
    "umbrella": "blue",
    "flower": "red",
    "book": "red",
    "cat": "orange",
    "dog": "brown",
}
SETTINGS = ("outdoors", "indoors", "night", "beach", "snow", "forest", "sunset")
FIGURE_PARTS = ("hair", "dress", "shirt", "hat")
OBJECTS = (
    "sun",
    "moon",
    "stars",
    "cloud",
    "tree",
    "house",
    "mountain",
    "balloon",
    "umbrella",
    "flower",
    "sword",
    "book",
    "cat",
    "dog",
)
SKIN = (250, 220, 190)


# -- prompts -> scenes -------------------------------------------------------------


@dataclass
class Scene:
    """What a prompt asks for: a setting, maybe a figure with coloured parts, objects."""

    setting: str = "outdoors"
    figure: str | None = None  # "girl" | "boy"
    parts: dict[str, str] = field(default_factory=dict)  # part -> colour name
    held: str | None = None
    objects: dict[str, str] = field(default_factory=dict)  # object -> colour name

    def droppable(self) -> list[tuple[str, str]]:
        """The tagged things a weak model may leave out: ("part"|"held"|"object", name)."""
        out = [("part", p) for p in self.parts if p != "hair"]
        out += [("held", self.held)] if self.held else []
        out += [("object", o) for o in self.objects]
        return out


def parse_tags(tags: str) -> Scene:
    """A Scene from a booru-style tag list; tags it cannot draw are ignored."""
    scene = Scene()
    for raw in tags.split(","):
        tag = raw.strip().lower()
        words = tag.split()
        if tag in ("1girl", "1boy"):
            scene.figure = tag[1:]
        elif tag in SETTINGS:
            if tag != "outdoors":  # the more specific setting wins
                scene.setting = tag
        elif len(words) == 2 and words[0] == "holding":
            scene.held = words[1]
        elif len(words) == 2 and words[0] in COLOURS and words[1] in FIGURE_PARTS:
            scene.parts[words[1]] = words[0]
        elif len(words) == 2 and words[0] in COLOURS and words[1] in OBJECTS:
            scene.objects[words[1]] = words[0]
        elif tag in OBJECTS:
            scene.objects.setdefault(tag, DEFAULT_COLOUR.get(tag, "white"))
    if scene.figure and "hair" not in scene.parts:
        scene.parts["hair"] = DEFAULT_COLOUR["hair"]
    return scene


# -- drawing -------------------------------------------------------------------------


def _jitter(rng: np.random.Generator, scale: float) -> int:
    return round(rng.uniform(-scale, scale))


def _background(d: ImageDraw.ImageDraw, setting: str, horizon: int, size: int) -> None:
    sky = {
        "night": (20, 24, 60),
        "snow": (200, 220, 240),
        "sunset": (240, 140, 90),
        "indoors": (222, 200, 160),
    }.get(setting, (135, 200, 235))
    ground = {
        "night": (30, 60, 40),
        "snow": (246, 246, 250),
        "beach": (238, 214, 175),
        "forest": (40, 110, 50),
        "sunset": (90, 60, 80),
        "indoors": (150, 100, 60),
    }.get(setting, (96, 168, 72))
    d.rectangle([0, 0, size, horizon], fill=sky)
    d.rectangle([0, horizon, size, size], fill=ground)
    if setting == "beach":
        d.rectangle([0, horizon - 18, size, horizon], fill=(30, 120, 200))
    if setting == "sunset":
        d.rectangle([0, horizon - 40, size, horizon], fill=(200, 90, 120))
    if setting == "indoors":
        d.rectangle([30, 40, 90, 100], fill=(170, 210, 240), outline=(110, 80, 50), width=4)
    if setting == "forest":
        for x in (15, 60, 200, 240):
            d.rectangle([x - 4, horizon - 30, x + 4, horizon + 5], fill=(90, 60, 30))
            d.ellipse([x - 22, horizon - 70, x + 22, horizon - 22], fill=(30, 90, 40))


def _draw_object(
    d: ImageDraw.ImageDraw, name: str, colour, x: int, y: int, s: float, rng: np.random.Generator
) -> None:
    """One object centred near (x, y) at scale s."""

    def box(cx, cy, rx, ry):
        return [cx - rx * s, cy - ry * s, cx + rx * s, cy + ry * s]

    if name == "sun":
        d.ellipse(box(x, y, 20, 20), fill=(255, 215, 0))
        for a in np.linspace(0, 2 * np.pi, 8, endpoint=False):
            d.line(
                [
                    x + 26 * s * np.cos(a),
                    y + 26 * s * np.sin(a),
                    x + 34 * s * np.cos(a),
                    y + 34 * s * np.sin(a),
                ],
                fill=(255, 215, 0),
                width=3,
            )
    elif name == "moon":
        d.ellipse(box(x, y, 18, 18), fill=(250, 245, 200))
        d.ellipse(box(x + 9 * s, y - 5 * s, 15, 15), fill=(20, 24, 60))
    elif name == "stars":
        for _ in range(9):
            sx, sy = rng.uniform(5, 250), rng.uniform(5, 90)
            d.ellipse([sx - 2, sy - 2, sx + 2, sy + 2], fill=(255, 255, 220))
    elif name == "cloud":
        for dx, r in ((-18, 14), (0, 20), (18, 14)):
            d.ellipse(box(x + dx * s, y, r, r * 0.8), fill=(250, 250, 250))
    elif name == "tree":
        d.rectangle(box(x, y + 20 * s, 6, 22), fill=(100, 65, 30))
        d.ellipse(box(x, y - 10 * s, 28, 30), fill=(40, 140, 50))
    elif name == "house":
        d.rectangle(box(x, y + 10 * s, 32, 26), fill=colour)
        d.polygon(
            [(x - 40 * s, y - 16 * s), (x + 40 * s, y - 16 * s), (x, y - 50 * s)],
            fill=(150, 40, 30),
        )
        d.rectangle(box(x, y + 24 * s, 7, 12), fill=(90, 55, 25))
    elif name == "mountain":
        d.polygon(
            [(x - 70 * s, y + 40 * s), (x + 70 * s, y + 40 * s), (x, y - 60 * s)],
            fill=(120, 120, 135),
        )
        d.polygon(
            [(x - 21 * s, y - 30 * s), (x + 21 * s, y - 30 * s), (x, y - 60 * s)],
            fill=(250, 250, 250),
        )
    elif name == "balloon":
        d.line([x, y + 18 * s, x + 4 * s, y + 60 * s], fill=(60, 60, 60), width=2)
        d.ellipse(box(x, y, 15, 19), fill=colour)
    elif name == "umbrella":
        d.line([x, y, x, y + 50 * s], fill=(60, 40, 20), width=3)
        d.pieslice(box(x, y, 34, 26), 180, 360, fill=colour)
    elif name == "flower":
        d.line([x, y, x, y + 30 * s], fill=(40, 130, 40), width=3)
        for a in np.linspace(0, 2 * np.pi, 5, endpoint=False):
            d.ellipse(box(x + 8 * s * np.cos(a), y + 8 * s * np.sin(a), 6, 6), fill=colour)
        d.ellipse(box(x, y, 4, 4), fill=(250, 210, 40))
    elif name == "sword":
        d.polygon(
            [(x - 3 * s, y + 20 * s), (x + 3 * s, y + 20 * s), (x, y - 50 * s)],
            fill=(200, 205, 215),
        )
        d.rectangle(box(x, y + 22 * s, 12, 3), fill=(120, 80, 30))
        d.rectangle(box(x, y + 32 * s, 3, 8), fill=(90, 55, 25))
    elif name == "book":
        d.rectangle(box(x, y, 16, 20), fill=colour, outline=(40, 30, 20), width=2)
        d.rectangle(box(x + 12 * s, y, 3, 18), fill=(245, 240, 225))
    elif name in ("cat", "dog"):
        d.ellipse(box(x, y, 30, 17), fill=colour)
        hx, hy = x + 28 * s, y - 18 * s
        d.ellipse(box(hx, hy, 14, 13), fill=colour)
        if name == "cat":
            d.polygon(
                [(hx - 12 * s, hy - 5 * s), (hx - 4 * s, hy - 9 * s), (hx - 10 * s, hy - 22 * s)],
                fill=colour,
            )
            d.polygon(
                [(hx + 12 * s, hy - 5 * s), (hx + 4 * s, hy - 9 * s), (hx + 10 * s, hy - 22 * s)],
                fill=colour,
            )
            d.line([x - 28 * s, y, x - 42 * s, y - 25 * s], fill=colour, width=int(5 * s))
        else:
            d.ellipse(box(hx - 12 * s, hy + 4 * s, 5, 10), fill=(70, 45, 20))
            d.ellipse(box(hx + 12 * s, hy + 4 * s, 5, 10), fill=(70, 45, 20))
            d.line([x - 28 * s, y - 4 * s, x - 40 * s, y - 16 * s], fill=colour, width=int(4 * s))
        d.ellipse(box(hx + 5 * s, hy - 2 * s, 2, 2), fill=(10, 10, 10))


def _draw_figure(
    d: ImageDraw.ImageDraw, scene: Scene, cx: int, base: int, s: float
) -> tuple[int, int]:
    """A standing figure with its coloured parts; returns where its right hand is."""
    col = {p: COLOURS[c] for p, c in scene.parts.items()}
    head_y = base - 150 * s
    hair = col.get("hair", COLOURS["brown"])
    if scene.figure == "girl":
        d.rectangle([cx - 26 * s, head_y, cx + 26 * s, head_y + 60 * s], fill=hair)
    # legs, then the body (dress or shirt), arms, head, hair cap, hat
    d.rectangle([cx - 14 * s, base - 60 * s, cx - 5 * s, base], fill=SKIN)
    d.rectangle([cx + 5 * s, base - 60 * s, cx + 14 * s, base], fill=SKIN)
    if "dress" in col or ("shirt" not in col and scene.figure == "girl"):
        d.polygon(
            [
                (cx - 16 * s, head_y + 26 * s),
                (cx + 16 * s, head_y + 26 * s),
                (cx + 38 * s, base - 45 * s),
                (cx - 38 * s, base - 45 * s),
            ],
            fill=col.get("dress", COLOURS[DEFAULT_COLOUR["dress"]]),
        )
    else:
        d.rectangle([cx - 16 * s, base - 62 * s, cx + 16 * s, base], fill=(50, 60, 90))
        d.rectangle(
            [cx - 20 * s, head_y + 26 * s, cx + 20 * s, base - 58 * s],
            fill=col.get("shirt", COLOURS[DEFAULT_COLOUR["shirt"]]),
        )
    hand = (int(cx + 34 * s), int(head_y + 75 * s))
    d.line([cx + 16 * s, head_y + 32 * s, hand[0], hand[1]], fill=SKIN, width=int(6 * s))
    d.line(
        [cx - 16 * s, head_y + 32 * s, cx - 32 * s, head_y + 75 * s], fill=SKIN, width=int(6 * s)
    )
    d.ellipse([cx - 20 * s, head_y - 20 * s, cx + 20 * s, head_y + 20 * s], fill=SKIN)
    d.chord([cx - 22 * s, head_y - 22 * s, cx + 22 * s, head_y + 14 * s], 180, 360, fill=hair)
    d.ellipse([cx - 9 * s, head_y - 2 * s, cx - 5 * s, head_y + 2 * s], fill=(30, 30, 30))
    d.ellipse([cx + 5 * s, head_y - 2 * s, cx + 9 * s, head_y + 2 * s], fill=(30, 30, 30))
    if "hat" in col:
        d.rectangle([cx - 28 * s, head_y - 22 * s, cx + 28 * s, head_y - 16 * s], fill=col["hat"])
        d.rectangle([cx - 16 * s, head_y - 42 * s, cx + 16 * s, head_y - 20 * s], fill=col["hat"])
    return hand


# Where objects go: fixed slots (x, y as a fraction of the size) with seed jitter.
_SLOTS = {
    "sun": (0.82, 0.16),
    "moon": (0.18, 0.16),
    "stars": (0.5, 0.2),
    "cloud": (0.45, 0.14),
    "mountain": (0.3, 0.42),
    "tree": (0.15, 0.55),
    "house": (0.78, 0.6),
    "cat": (0.7, 0.82),
    "dog": (0.7, 0.82),
}


def render_scene(scene: Scene, rng: np.random.Generator, size: int = IMAGE_SIZE) -> Image.Image:
    """The faithful rendering of ``scene``; ``rng`` sets layout, scale and placement."""
    img = Image.new("RGB", (size, size))
    d = ImageDraw.Draw(img)
    horizon = int(size * 0.55) + _jitter(rng, 15)
    _background(d, scene.setting, horizon, size)
    s = size / 256
    centre_objects = [o for o in scene.objects if o not in _SLOTS]
    for name, colour in scene.objects.items():
        if name in _SLOTS:
            fx, fy = _SLOTS[name]
            x, y = int(fx * size) + _jitter(rng, 12), int(fy * size) + _jitter(rng, 8)
            scale = s * rng.uniform(0.85, 1.15)
            if name in ("cat", "dog") and scene.figure is None:
                x, y, scale = int(size * 0.45) + _jitter(rng, 20), int(size * 0.72), scale * 1.6
            _draw_object(d, name, COLOURS[colour], x, y, scale, rng)
    if scene.figure:
        cx = int(size * 0.42) + _jitter(rng, 20)
        hand = _draw_figure(d, scene, cx, int(size * 0.95), s * rng.uniform(0.95, 1.05))
        if scene.held:
            colour = COLOURS[DEFAULT_COLOUR.get(scene.held, "white")]
            _draw_object(d, scene.held, colour, hand[0] + 6, hand[1] - 14, s * 0.9, rng)
    for i, name in enumerate(centre_objects):
        x = int(size * (0.5 + 0.25 * (i - (len(centre_objects) - 1) / 2))) + _jitter(rng, 15)
        y = int(size * 0.6) + _jitter(rng, 10)
        _draw_object(d, name, COLOURS[scene.objects[name]], x, y, s * 1.4, rng)
    return img


# -- the four models -------------------------------------------------------------------


def drop_objects(scene: Scene, rng: np.random.Generator) -> Scene:
    """A copy of ``scene`` without about half of its tagged things (at least one)."""
    things = scene.droppable()
    if not things:
        return scene
    drop = rng.random(len(things)) < 0.5
    drop[rng.integers(len(things))] = True
    out = Scene(scene.setting, scene.figure, dict(scene.parts), scene.held, dict(scene.objects))
    for (kind, name), gone in zip(things, drop, strict=True):
        if not gone:
            continue
        if kind == "part":
            out.parts.pop(name)
        elif kind == "held":
            out.held = None
        else:
            out.objects.pop(name)
    return out


def rotate_hues(img: Image.Image, degrees: float) -> Image.Image:
    h, s, v = img.convert("HSV").split()
    shift = round(degrees / 360 * 256) % 256
    h = h.point(lambda x: (x + shift) % 256)
    return Image.merge("HSV", (h, s, v)).convert("RGB")


def render(
    model: str, tags: str, scene_rng: np.random.Generator, model_rng: np.random.Generator
) -> Image.Image:
    """``model``'s image for a prompt; ``scene_rng`` (same for all models) sets the layout."""
    scene = parse_tags(tags)
    if model == "missing-objects":
        scene = drop_objects(scene, model_rng)
    img = render_scene(scene, scene_rng)
    if model == "blurry":
        img = img.filter(ImageFilter.GaussianBlur(3))
    elif model == "wrong-colours":
        img = rotate_hues(img, model_rng.uniform(90, 270))
    elif model not in ("faithful", "missing-objects"):
        raise ValueError(f"unknown demo model {model!r}; known: {', '.join(DEMO_MODELS)}")
    return img


def _rngs(seed: int, prompt_index: int, image_seed: int, model_index: int):
    scene = np.random.default_rng([seed, prompt_index, image_seed])
    model = np.random.default_rng([seed, prompt_index, image_seed, 1000 + model_index])
    return scene, model


# -- building the workspace -------------------------------------------------------------


def build_demo(store: Store, seed: int = 0) -> dict[str, int]:
    """Write the demo prompts, models and images into ``store``; returns counts added.

    Idempotent: what is already there is kept (images are matched by pixel hash).
    """
    from arena.intake.ingest import import_prompts

    prompts = import_prompts(store, DEMO_PROMPTS, DEMO_PROMPT_SET)
    frame = store.prompts_frame()
    frame = frame[frame.prompt_set == DEMO_PROMPT_SET].reset_index(drop=True)
    tags = dict(zip(frame.prompt_id, frame.tags, strict=True))
    models = {
        name: store.add_model(name, "demo", source=f"arena.demo.build:{name}", description=desc)
        for name, desc in DEMO_MODELS.items()
    }
    ref_id = store.add_model(
        REFERENCE_MODEL,
        "reference",
        source="arena.demo.build:faithful",
        description=(
            "Reference ('real') images for model-level metrics such as FID/KID: the faithful "
            "renderer at seeds "
            + ", ".join(map(str, REFERENCE_SEEDS))
            + ". Never shown to raters: matchmaking must exclude models of kind 'reference'."
        ),
    )
    jobs = [
        (model_id, name, m_index, seeds)
        for m_index, (name, model_id) in enumerate(models.items())
        for seeds in [DEMO_SEEDS]
    ] + [(ref_id, "faithful", 0, REFERENCE_SEEDS)]
    with store.session() as s:
        have = set(s.execute(select(db.Image.model_id, db.Image.sha256)).all())
    rows = []
    for model_id, renderer, m_index, seeds in jobs:
        for p_index, prompt_id in enumerate(sorted(tags)):
            for image_seed in seeds:
                scene_rng, model_rng = _rngs(seed, p_index, image_seed, m_index)
                img = render(renderer, tags[prompt_id], scene_rng, model_rng)
                stored = store.images.put_image(img)
                if (model_id, stored.sha256) in have:
                    continue
                have.add((model_id, stored.sha256))
                rows.append(
                    {
                        "sha256": stored.sha256,
                        "model_id": model_id,
                        "prompt_id": int(prompt_id),
                        "seed": image_seed,
                        "width": stored.width,
                        "height": stored.height,
                        "settings_hash": "",
                        "params": {"renderer": renderer, "demo_seed": seed},
                        "source_name": f"demo:{renderer}",
                    }
                )
    with store.session() as s:
        if rows:
            s.execute(insert(db.Image), rows)
    return {"prompts": prompts.added, "images": len(rows)}


# -- model-level numbers with stand-in extractors -------------------------------------

DEMO_EXTRACTOR_TAG = STAND_IN_TAG  # "demo-random": what the pages look for to label numbers
DEMO_WEIGHTS_FOLDER = "demo-weights"


def ml_available() -> str:
    """ "" when the packages the model-level numbers need import, else what is missing."""
    import importlib.util

    needed = ("torch", "torchvision", "open_clip", "transformers", "torch_fidelity")
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if not missing:
        return ""
    return (
        f"the model-level numbers need the ML extras ({', '.join(missing)} missing): "
        "install them with `make install-test` (the pinned CPU torch first, then "
        "`pip install -e '.[ml]'`)."
    )


def demo_model_metrics(store: Store, seed: int = 0, progress: bool = False) -> list:
    """KID, FID, CMMD, FD-DINO, diversity and AS of the demo models against ``demo-real``.

    No weights can be downloaded, so the three feature networks are seeded
    random-weight stand-ins (``scoring.testing.tiny_extractors``: torch-fidelity's full
    Inception-v3, a narrow ViT-L-14-336-shaped open_clip CLIP, a tiny DINOv2), written
    in the real file formats under ``<workspace>/demo-weights`` and loaded by the real
    loading code. Every feature and number they give carries the extractor tag
    ``demo-random`` in its key, so the leaderboard, the Agreement tab and the exports
    label them: they rank the demo models but are not FID/KID values of any real
    network. Returns the ``scoring.distribution.run.Result`` rows.
    """
    problem = ml_available()
    if problem:
        raise StoreError(problem)
    if REFERENCE_MODEL not in store.model_names(include_reference=True):
        raise StoreError(
            f"{store.workspace} is not a demo workspace (no {REFERENCE_MODEL!r} reference set); "
            "build the demo into an empty workspace with `arena demo` first."
        )
    from scoring.distribution import run as distribution_run
    from scoring.distribution.features import EXTRACTORS
    from scoring.testing.tiny_extractors import write_all

    folder = store.workspace / DEMO_WEIGHTS_FOLDER
    paths = write_all(folder, seed=seed)
    by_name = {"inception": "inception", "clip-l14-336": "cmmd", "dinov2-l14": "fd-dino"}
    extractors = {
        name: EXTRACTORS[name].load(paths[key]).tagged(DEMO_EXTRACTOR_TAG)
        for name, key in by_name.items()
    }
    return distribution_run.run(
        store,
        distribution_run.METRICS,
        REFERENCE_MODEL,
        models=list(DEMO_MODELS),
        seed=seed,
        progress=progress,
        extractors=extractors,
    )


# -- simulated raters ------------------------------------------------------------------


def outcome_probabilities(s_a: float, s_b: float, tie_strength: float = 0.3) -> np.ndarray:
    """P(left, right, tie, both_bad) for strengths (s_a left, s_b right); Davidson ties."""
    pa, pb = np.exp(s_a), np.exp(s_b)
    nodecision = tie_strength * np.sqrt(pa * pb)
    total = pa + pb + nodecision
    both_bad = 1.0 / (1.0 + np.exp(s_a + s_b))
    return np.array(
        [pa / total, pb / total, nodecision * (1 - both_bad) / total, nodecision * both_bad / total]
    )


def simulate_votes(
    store: Store,
    n: int,
    seed: int = 0,
    strengths: dict[str, float] | None = None,
    n_raters: int = 20,
    tie_strength: float = 0.3,
) -> int:
    """Add ``n`` battles with votes by simulated raters; returns the number of votes written.

    Each battle: two distinct models drawn uniformly from those with a known
    strength, a prompt both have images for, one image of each, random sides;
    the outcome follows :func:`outcome_probabilities`. Written in bulk, in
    one transaction, with policy "simulated" and raters "sim-00", "sim-01", ...
    """
    if n <= 0:
        return 0
    strengths = DEMO_TRUE_STRENGTH if strengths is None else strengths
    rng = np.random.default_rng([seed, 7])
    images = store.images_frame()
    images = images[images.model.isin(list(strengths)) & (images.model_kind != "reference")]
    names = sorted(images.model.unique())
    if len(names) < 2:
        raise StoreError(
            "simulated votes need at least two demo models with images; run `arena demo` on "
            "an empty workspace first."
        )
    # image ids per (model, prompt); only prompts that several models have
    groups = images.groupby(["model", "prompt_id"]).image_id.apply(np.array).to_dict()
    pair_prompts = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            common = sorted({p for m, p in groups if m == a} & {p for m, p in groups if m == b})
            if common:
                pair_prompts[(a, b)] = np.array(common)
    pairs = list(pair_prompts)
    if not pairs:
        raise StoreError("no two demo models share a prompt; nothing to simulate.")
    with store.session() as s:
        rater_ids = [
            store.rater_id(f"sim-{k:02d}", kind="simulated", session=s) for k in range(n_raters)
        ]
        last = s.scalar(select(func.max(db.Vote.created_at)))
    now = db.utcnow()
    start = max(now - timedelta(seconds=2 * n), (last or now) + timedelta(seconds=1))
    pair_idx = rng.integers(len(pairs), size=n)
    swap = rng.random(n) < 0.5
    raters = rng.choice(rater_ids, size=n)
    decision_ms = np.clip(rng.lognormal(np.log(3500), 0.5, size=n), 800, 60_000).astype(int)
    u = rng.random(n)
    battles, votes = [], []
    for k in range(n):
        a, b = pairs[pair_idx[k]]
        if swap[k]:
            a, b = b, a
        prompt = int(rng.choice(pair_prompts[tuple(sorted((a, b)))]))
        left = int(rng.choice(groups[(a, prompt)]))
        right = int(rng.choice(groups[(b, prompt)]))
        probs = np.cumsum(outcome_probabilities(strengths[a], strengths[b], tie_strength))
        outcome = db.OUTCOMES[int(np.searchsorted(probs, u[k] * probs[-1], side="right"))]
        voted = start + timedelta(seconds=2 * k)
        battles.append(
            {
                "token": secrets.token_hex(16),
                "prompt_id": prompt,
                "left_image_id": left,
                "right_image_id": right,
                "rater_id": int(raters[k]),
                "policy": "simulated",
                "kind": "normal",
                "served_at": voted - timedelta(milliseconds=int(decision_ms[k])),
            }
        )
        votes.append(
            {
                "rater_id": int(raters[k]),
                "outcome": outcome,
                "decision_ms": int(decision_ms[k]),
                "created_at": voted,
            }
        )
    with store.session() as s:
        ids = s.scalars(
            insert(db.Battle).returning(db.Battle.id, sort_by_parameter_order=True), battles
        ).all()
        for vote, battle_id in zip(votes, ids, strict=True):
            vote["battle_id"] = battle_id
        s.execute(insert(db.Vote), votes)
    return n
