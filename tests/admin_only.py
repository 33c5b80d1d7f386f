"""The check that a section of the agreement page is the Admin app's alone: its label is
among the Admin app's blocks and not among the raters' app's, even with the reveal on."""

from __future__ import annotations


def block_labels(app) -> set:
    return {getattr(block, "label", None) for block in app.blocks.values()}


def assert_admin_only(store, label: str) -> None:
    from arena.ui.admin import build_admin_app
    from arena.ui.app import build_app

    assert label in block_labels(build_admin_app(store.with_settings(admin_secret="pw")))
    assert label not in block_labels(build_app(store.with_settings(reveal_models=True)))
