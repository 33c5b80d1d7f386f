"""benchmarks/scale.py reads the jobs' own figures: the printed summaries and the feature
rows' extraction times. If a summary's wording or the rows change, the benchmark would
stop reading (or misread) them; these tests say so first."""

from datetime import datetime, timedelta

import numpy as np
import pytest

from scoring.generation.job import ModelSummary, format_summary
from scoring.generation.job import merge_summaries as merge_generation
from scoring.metrics.runner import RunSummary
from scoring.metrics.runner import merge_summaries as merge_scores
from tests.benchmark_script import load_benchmark


@pytest.fixture(scope="module")
def scale():
    return load_benchmark("scale")


def test_reads_the_score_summary_of_two_ranks(scale):
    parts = [
        RunSummary(metrics=["clip"], images_selected=n, batches=b, seconds=s)
        for n, b, s in ((2016, 63, 1.8), (1984, 62, 2.0))
    ]
    out = "some log line\n" + merge_scores(parts).format() + "\n"
    images, rate = scale.summary_rate("score", out)
    assert images == 4000
    assert rate == pytest.approx(4000 / 2.0, abs=0.05)  # over the slowest rank's seconds


def test_reads_the_generate_summary_of_two_ranks(scale):
    parts = [ModelSummary("tiny", planned=192, generated=96, seconds=s) for s in (1.5, 1.6)]
    out = format_summary([merge_generation(parts)])
    images, rate = scale.summary_rate("generate", out)
    assert images == 192
    assert rate == pytest.approx(192 / 1.6, abs=0.005)


def test_a_missing_summary_stops_the_benchmark(scale):
    with pytest.raises(SystemExit, match="no score summary"):
        scale.summary_rate("score", "Traceback (most recent call last): ...")


@pytest.mark.parametrize(
    ("ranks", "offsets", "expected"),
    [
        # one process, 4 batches of 2 rows, one per second: 3 s between the first and the
        # last row, plus the first batch's second that finished before the first row
        (1, [0, 1, 2, 3], 8 / 4.0),
        # two ranks, 2 batches each, side by side: 1 s apart, 2 s in all
        (2, [0, 0.01, 1, 1.01], 8 / (1.01 * 2)),
    ],
)
def test_feature_stage_counts_each_ranks_first_batch(scale, tmp_path, ranks, offsets, expected):
    from arena.storage import db

    store = scale.new_store(tmp_path / "ws", prompts=2)
    scale.add_images(store, 8, models=1, seed=0)
    with store.session() as s:
        ids = s.scalars(db.Image.__table__.select().with_only_columns(db.Image.id)).all()
        start = datetime(2026, 1, 1)
        vec = np.zeros(4, np.float32).tobytes()
        for k, image_id in enumerate(sorted(ids)):
            when = start + timedelta(seconds=offsets[k // 2])
            s.add(db.Feature(image_id=image_id, extractor="x", dim=4, vector=vec, created_at=when))
    store.close()
    rows, rate = scale.feature_rate(tmp_path / "ws", ranks, batch=2)
    assert rows == 8
    assert rate == pytest.approx(expected)
