"""Gradio Blocks for the arena; see ``build_app``."""

from arena.ui.app import build_app

__all__ = ["build_app"]
