"""Gold checks: an image against a visibly degraded copy of itself.

Any attentive rater prefers the intact image, so a rater's accuracy on gold
battles measures attention, not taste. Degraded copies are stored like other
images (content-hashed, metadata-free) under the same model, with
``broken="gold"`` so that matchmaking and metrics never use them as ordinary
images, and ``params`` recording the source image and the degradation.
Degradations are strong on purpose (a check, not a test of perception).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter
from sqlalchemy import select

from arena.storage import db

DEGRADATIONS = ("blur", "noise", "colour_shift")


def blur(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    radius = max(img.width, img.height) / rng.uniform(40, 60)
    return img.filter(ImageFilter.GaussianBlur(radius))


def noise(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    pixels = np.asarray(img, dtype=np.float32)
    noisy = pixels + rng.normal(0.0, rng.uniform(60, 80), pixels.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def colour_shift(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Rotate hues by a third to a half of the circle and wash the image out."""
    hsv = np.asarray(img.convert("HSV"), dtype=np.int32)
    shift = int(rng.integers(85, 128))
    hsv[..., 0] = (hsv[..., 0] + shift) % 256
    hsv[..., 1] = hsv[..., 1] // 2 + 100
    return Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB")


_FUNCTIONS = {"blur": blur, "noise": noise, "colour_shift": colour_shift}


def degrade(img: Image.Image, kind: str, rng: np.random.Generator) -> Image.Image:
    """A degraded RGB copy of ``img`` of the same size; ``kind`` is one of DEGRADATIONS."""
    try:
        function = _FUNCTIONS[kind]
    except KeyError:
        raise ValueError(
            f"unknown degradation {kind!r}; known: {', '.join(DEGRADATIONS)}"
        ) from None
    out = function(img.convert("RGB"), rng)
    assert out.size == img.size
    return out


@dataclass(frozen=True)
class GoldPlan:
    """A gold battle to serve: which degradation, and on which side the intact image goes."""

    degradation: str
    intact_side: str


def plan_gold(rng: np.random.Generator, rate: float) -> GoldPlan | None:
    """With probability ``rate``, a gold battle (random degradation and side); else None."""
    if rate <= 0 or rng.random() >= rate:
        return None
    return GoldPlan(
        DEGRADATIONS[int(rng.integers(len(DEGRADATIONS)))],
        "left" if rng.random() < 0.5 else "right",
    )


def degraded_copy(store, image_id: int, degradation: str) -> int:
    """The id of the stored degraded copy of an image, made (deterministically) on first use.

    The copy belongs to the same model and prompt, with ``broken="gold"`` (so it is never
    served as an ordinary image nor scored) and ``source_name="gold:<image id>:<kind>"``.
    """
    source_name = f"gold:{image_id}:{degradation}"
    with store.session() as s:
        original = s.get(db.Image, image_id)
        if original is None:
            raise ValueError(f"no image with id {image_id}")
        existing = s.scalar(
            select(db.Image.id).where(
                db.Image.model_id == original.model_id, db.Image.source_name == source_name
            )
        )
        if existing is not None:
            return existing
        model_id, prompt_id, sha = original.model_id, original.prompt_id, original.sha256
    rng = np.random.default_rng([image_id, DEGRADATIONS.index(degradation)])
    stored = store.images.put_image(degrade(store.images.open(sha), degradation, rng))
    with store.session() as s:
        same = s.scalar(
            select(db.Image.id).where(
                db.Image.model_id == model_id, db.Image.sha256 == stored.sha256
            )
        )
        if same is not None:  # a concurrent request stored it first
            return same
        return store.add_image(
            model_id,
            prompt_id,
            stored,
            params={"gold_of": image_id, "degradation": degradation},
            broken="gold",
            source_name=source_name,
            session=s,
        )


GOLD_POOL_SIZE = 64  # gold pairs made ahead; a pool this size hides which images are checks


@dataclass(frozen=True)
class GoldPair:
    prompt_id: int
    intact_id: int
    copy_id: int


class GoldPool:
    """Gold pairs (an image and its degraded copy, renditions included) made before any is
    served.

    Made while serving, a gold battle would arrive tens of milliseconds later than any
    other battle (degrading and encoding take that long): a timing tell. The pool is
    made when the app starts (or on the first gold battle of a script) from a seeded
    sample of the servable images, in image-id order, so the same workspace and seed
    always give the same pool.
    """

    def __init__(self, pairs: list[GoldPair]):
        self.pairs = pairs

    @classmethod
    def of(cls, store) -> GoldPool:
        """The one gold pool of a store, prepared on first use."""
        return store.shared(cls, lambda: cls.prepare(store))

    @classmethod
    def prepare(cls, store, size: int = GOLD_POOL_SIZE) -> GoldPool:
        with store.session() as s:
            rows = s.execute(
                select(db.Image.id, db.Image.prompt_id)
                .join(db.Model, db.Model.id == db.Image.model_id)
                .where(
                    db.Image.broken.is_(None),
                    db.Image.prompt_id.is_not(None),
                    db.Model.kind != "reference",
                    db.Model.active.is_(True),
                )
                .order_by(db.Image.id)
            ).all()
        rng = np.random.default_rng([store.settings.seed, 0x601D])
        picks = rng.choice(len(rows), size=min(size, len(rows)), replace=False) if rows else []
        pairs = []
        for k in sorted(int(p) for p in picks):
            image_id, prompt_id = rows[k]
            kind = DEGRADATIONS[int(rng.integers(len(DEGRADATIONS)))]
            pairs.append(GoldPair(prompt_id, image_id, degraded_copy(store, image_id, kind)))
        return cls(pairs)

    def draw(self, rng: np.random.Generator) -> GoldPair | None:
        return self.pairs[int(rng.integers(len(self.pairs)))] if self.pairs else None
