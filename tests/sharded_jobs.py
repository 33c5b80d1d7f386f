"""The machine jobs of a workspace in order, as a user types them; run under torchrun.

``python tests/sharded_jobs.py WORKSPACE WEIGHTS CLIP [DB_URL]`` runs `arena generate`,
`arena score` and `arena distribution` through ``arena.cli.main`` (what ``-m arena``
runs), so one ``torchrun`` launch covers the three sharded jobs. The tests also run it
without a launcher for the single-process reference.
"""

from __future__ import annotations

import sys

GENERATE = ["generate", "--models", "tiny,tinier", "--prompts", "p", "--seeds", "2"]
GENERATE += ["--size", "16x16", "--steps", "2", "--cfg", "5", "--batch-size", "3"]
SCORE = ["score", "--metrics", "classical,clip", "--batch-size", "5"]
DISTRIBUTION = ["distribution", "--reference", "real", "--metrics", "kid,fid,fd-dino,as"]
DISTRIBUTION += ["--batch-size", "4", "--kid-subset-size", "4"]


def jobs(clip: str) -> list[list[str]]:
    common = ["--device", "cpu", "--no-progress"]
    return [
        GENERATE + common,
        [*SCORE, "--weights", f"clip={clip}", *common],
        DISTRIBUTION + common,
    ]


def main(argv: list[str]) -> int:
    import os

    from arena.cli import main as arena

    workspace, weights, clip, *rest = argv
    os.environ["ARENA_WEIGHTS_DIR"] = weights  # the tiny extractors, found like real ones
    head = ["--workspace", workspace] + (["--db-url", rest[0]] if rest and rest[0] else [])
    for job in jobs(clip):
        code = arena(head + job)
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    sys.exit(main(sys.argv[1:]))
