"""Prompts into pictures: booru-style tags parsed into a scene of shapes and colours, drawn.

``parse_tags("1girl, red hair, blue dress, outdoors")`` gives a :class:`Scene`;
``render_scene`` draws it faithfully, with layout, scale and placement from a random
generator, so the same (prompt, seed) gives the same picture. The demo's models
(``arena.demo.models``) are this renderer with a defect each.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 256

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
