"""The warning every report shows for numbers computed with stand-in weights.

The offline demo computes its model-level numbers (KID, FID ...) with random-weight
stand-in feature extractors; their feature keys end in ``+demo-random``. Such numbers
rank the demo models but are not FID/KID values of the real networks, and every page
that shows them says so in the same words (:func:`stand_in_warning`).
"""

from __future__ import annotations

from collections.abc import Iterable

#: Tag of feature extractors with stand-in (random) weights, as the offline demo uses.
STAND_IN_TAG = "demo-random"

WARNING = (
    f"⚠ Demo numbers: computed with random-weight stand-in extractors ({STAND_IN_TAG}), "
    "not the real Inception/CLIP/DINOv2 weights — they rank the demo models but are not "
    "comparable with any published FID/KID."
)


def uses_stand_ins(feature_keys: Iterable) -> bool:
    """Whether any feature key (``name@version#fingerprint[+tag]``) is a stand-in's."""
    return any(str(k).endswith(f"+{STAND_IN_TAG}") for k in feature_keys)


def stand_in_warning(feature_keys: Iterable) -> str:
    """:data:`WARNING` when any key is a stand-in's, else ""."""
    return WARNING if uses_stand_ins(feature_keys) else ""


def stand_in_label(feature_keys: Iterable) -> str:
    """``[demo-random]`` for figure titles when any key is a stand-in's, else ""."""
    return f"[{STAND_IN_TAG}]" if uses_stand_ins(feature_keys) else ""
