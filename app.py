"""`python app.py`: the arena on the default workspace, built from the demo when empty.

Settings come from ARENA_* environment variables (see `arena settings`). On a workspace
of demo models only, the model names are revealed after each vote unless
ARENA_REVEAL_MODELS is set (``arena.serve.demo_reveal``); elsewhere the reveal is off.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from arena.serve import serve
from arena.storage.store import Store


def main() -> None:
    serve(Store(), build_demo_if_empty=True)


if __name__ == "__main__":
    main()
