"""The offline demo: prompts, procedural models of different quality, simulated raters."""

import numpy as np
import pytest
from PIL import Image
from scipy import stats

from arena.demo.build import DEMO_SEEDS, REFERENCE_MODEL, build_demo
from arena.demo.models import DEMO_MODELS, DEMO_TRUE_STRENGTH, render
from arena.demo.raters import outcome_probabilities, simulate_votes
from arena.demo.scenes import COLOURS, parse_tags
from arena.storage.store import Store, StoreError


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory):
    from arena.config import load_settings

    store = Store(load_settings(env={}, workspace=str(tmp_path_factory.mktemp("demo"))))
    build_demo(store, seed=0)
    yield store
    store.close()


def _rngs(k=0):
    return np.random.default_rng([k, 1]), np.random.default_rng([k, 2])


def test_tags_parse_into_scenes():
    scene = parse_tags("1girl, red hair, blue dress, holding umbrella, night, moon, tree")
    assert scene.figure == "girl" and scene.setting == "night"
    assert scene.parts == {"hair": "red", "dress": "blue"}
    assert scene.held == "umbrella" and set(scene.objects) == {"moon", "tree"}
    assert parse_tags("no humans, outdoors, red house").objects == {"house": "red"}


def test_the_demo_has_every_model_prompt_and_seed(demo_store):
    status = demo_store.status()
    assert status["prompts"] == 42 and status["models"] == len(DEMO_MODELS)
    frame = demo_store.images_frame()
    counts = frame.groupby("model").size()
    for name in DEMO_MODELS:
        # a "missing-objects" scene that lost everything can repeat across seeds (same pixels)
        assert 0.95 * 42 * len(DEMO_SEEDS) <= counts[name] <= 42 * len(DEMO_SEEDS)
    ref = frame[frame.model == REFERENCE_MODEL]
    assert set(ref.model_kind) == {"reference"} and len(ref) == 84
    assert set(ref.seed).isdisjoint(DEMO_SEEDS)
    assert REFERENCE_MODEL not in demo_store.model_names()
    for sha in frame.sha256.sample(20, random_state=0):
        assert demo_store.images.exists(sha)


def test_the_reference_model_says_it_is_never_shown(demo_store):
    from sqlalchemy import select

    from arena.storage import db

    with demo_store.session() as s:
        desc = s.scalar(select(db.Model.description).where(db.Model.name == REFERENCE_MODEL))
    assert "Never shown to raters" in desc and "reference" in desc


def test_building_is_deterministic_and_idempotent(demo_store, tmp_path):
    again = build_demo(demo_store, seed=0)
    assert again == {"prompts": 0, "images": 0}
    tags = "1girl, red hair, blue dress, outdoors"
    a = render("faithful", tags, *_rngs(3))
    b = render("faithful", tags, *_rngs(3))
    c = render("faithful", tags, *_rngs(4))
    assert a.tobytes() == b.tobytes() != c.tobytes()


def _sharpness(img: Image.Image) -> float:
    g = np.asarray(img.convert("L"), dtype=float)
    lap = g[1:-1, 2:] + g[1:-1, :-2] + g[2:, 1:-1] + g[:-2, 1:-1] - 4 * g[1:-1, 1:-1]
    return float(lap.var())


def _has_colour(img: Image.Image, rgb) -> bool:
    return bool((np.asarray(img) == np.array(rgb)).all(axis=-1).any())


def test_the_models_differ_in_the_documented_ways(demo_store):
    frame = demo_store.prompts_frame()
    for k, tags in enumerate(frame.tags):
        scene_seed = [0, k, 0]
        out = {
            m: render(m, tags, np.random.default_rng(scene_seed), np.random.default_rng([k, 9]))
            for m in DEMO_MODELS
        }
        assert _sharpness(out["blurry"]) < 0.5 * _sharpness(out["faithful"])
        assert out["missing-objects"].tobytes() != out["faithful"].tobytes()
        faithful_hsv = np.asarray(out["faithful"].convert("HSV"))[..., 0].astype(int)
        wrong_hsv = np.asarray(out["wrong-colours"].convert("HSV"))[..., 0].astype(int)
        saturated = np.asarray(out["faithful"].convert("HSV"))[..., 1] > 80
        assert out["wrong-colours"].tobytes() != out["faithful"].tobytes()
        if saturated.sum() > 500:  # hues rotated by 90-270 degrees where there is colour
            shift = np.median((wrong_hsv - faithful_hsv)[saturated] % 256)
            assert 50 < shift < 206, tags
        scene = parse_tags(tags)
        for colour in scene.parts.values():  # the faithful model draws every tagged colour
            assert _has_colour(out["faithful"], COLOURS[colour]), (tags, colour)


def test_outcome_probabilities_are_a_distribution_and_symmetric():
    p = outcome_probabilities(1.0, -0.5)
    q = outcome_probabilities(-0.5, 1.0)
    assert p.sum() == pytest.approx(1.0) and (p > 0).all()
    assert p[0] == pytest.approx(q[1]) and p[2:] == pytest.approx(q[2:])
    # decisive votes follow Bradley-Terry exactly
    assert p[0] / (p[0] + p[1]) == pytest.approx(1 / (1 + np.exp(-1.5)))


def test_simulated_votes_recover_the_hidden_strengths(demo_store):
    n = 6000
    assert simulate_votes(demo_store, n, seed=1) == n
    votes = demo_store.votes_frame()
    assert len(votes) == n
    assert set(votes.rater_kind) == {"simulated"} and set(votes.policy) == {"simulated"}
    assert (votes.left_model != votes.right_model).all()
    assert REFERENCE_MODEL not in set(votes.left_model) | set(votes.right_model)
    images = demo_store.images_frame().set_index("image_id")
    assert (
        images.loc[votes.left_image_id, "prompt_id"].values
        == images.loc[votes.right_image_id, "prompt_id"].values
    ).all()
    assert abs((votes.left_model < votes.right_model).mean() - 0.5) < 0.03  # random sides
    # score per model: wins + half of ties/both-bad, over its battles
    score = {}
    for m in DEMO_MODELS:
        left, right = votes[votes.left_model == m], votes[votes.right_model == m]
        half = (
            left.outcome.isin(["tie", "both_bad"]).sum()
            + right.outcome.isin(["tie", "both_bad"]).sum()
        ) / 2
        wins = (left.outcome == "left").sum() + (right.outcome == "right").sum() + half
        score[m] = wins / (len(left) + len(right))
    order = sorted(DEMO_TRUE_STRENGTH, key=DEMO_TRUE_STRENGTH.get, reverse=True)
    assert sorted(score, key=score.get, reverse=True) == order
    # one pair's outcome counts match the model's probabilities (chi-square)
    a, b = "faithful", "blurry"
    pair = votes[(votes.left_model == a) & (votes.right_model == b)]
    observed = [(pair.outcome == o).sum() for o in ("left", "right", "tie", "both_bad")]
    expected = outcome_probabilities(DEMO_TRUE_STRENGTH[a], DEMO_TRUE_STRENGTH[b]) * len(pair)
    assert stats.chisquare(observed, expected).pvalue > 1e-3


def test_simulation_is_deterministic_and_appends_in_time(demo_store):
    def run(seed):
        before = len(demo_store.votes_frame())
        simulate_votes(demo_store, 300, seed=seed)
        new = demo_store.votes_frame().iloc[before:]
        assert len(new) == 300
        return new

    first, second, other = run(5), run(5), run(6)
    columns = ["left_image_id", "right_image_id", "outcome", "decision_ms", "rater_id"]
    assert (first[columns].values == second[columns].values).all()
    assert not (first[columns].values == other[columns].values).all()
    assert second.created_at.min() > first.created_at.max()
    assert other.created_at.min() > second.created_at.max()


def test_simulation_needs_demo_models(store):
    with pytest.raises(StoreError, match="run `arena demo` on an empty workspace"):
        simulate_votes(store, 10)


# -- model-level numbers with the demo's random-weight stand-in extractors --------------------
MODEL_LEVEL = ("kid", "fid", "is", "cmmd", "fd-dino", "diversity", "div-lpips", "as")


@pytest.fixture(scope="module")
def demo_metrics_store(tmp_path_factory):
    """The demo built, voted on and measured through the CLI (`arena demo --model-metrics`):
    the real writers, loaders, feature cache and `arena distribution` code path."""
    from arena import cli
    from arena.config import load_settings

    workspace = tmp_path_factory.mktemp("demo-metrics")
    code = cli.main(["-w", str(workspace), "demo", "--simulate-votes", "2000", "--model-metrics"])
    assert code == 0
    store = Store(load_settings(env={}, workspace=str(workspace)))
    yield store
    store.close()


@pytest.mark.slow
def test_demo_leaderboard_shows_the_model_level_numbers(demo_metrics_store):
    from arena.reports.leaderboard import LeaderboardService
    from arena.ui.leaderboard_tab import board_outputs

    store = demo_metrics_store
    service = LeaderboardService(store.with_settings(bootstrap_rounds=0))
    frame = service.get().frame.set_index("model")
    assert set(frame.index) == set(DEMO_MODELS)
    for column in (*MODEL_LEVEL, "kid_std", "anomaly"):  # anomaly: the mean AS_i
        assert column in frame.columns, column
        assert np.isfinite(frame[column].to_numpy(float)).all(), column
    numbers = store.model_metrics_frame()
    assert REFERENCE_MODEL not in set(numbers.model)
    assert set(numbers.model) == set(DEMO_MODELS)
    assert set(numbers.metric) == set(MODEL_LEVEL)
    # Every number says it came from the stand-ins, and the page says so in words.
    assert all(d["features"].endswith("+demo-random") for d in numbers.details)
    summary = board_outputs(service)[0]
    assert "random-weight stand-in extractors" in summary and "demo-random" in summary
    versions = set(store.scores_frame(["anomaly"]).version)
    assert versions == {"dinov2-cls.pgd-ascent.1+demo-random"}


@pytest.mark.slow
def test_faithful_is_closest_to_the_reference_even_with_random_features(demo_metrics_store):
    """demo-real is the faithful renderer at other seeds; blur and a hue rotation move
    every feature distribution away from it, even through random-weight networks."""
    numbers = demo_metrics_store.model_metrics_frame()
    value = numbers.set_index(["metric", "model"])["value"]
    for metric in ("kid", "fid", "cmmd", "fd-dino"):
        for worse in ("blurry", "wrong-colours"):
            assert value[(metric, "faithful")] < value[(metric, worse)], (metric, worse)


@pytest.mark.slow
def test_demo_model_level_numbers_reach_agreement_and_export(demo_metrics_store, tmp_path):
    from arena.reports.export import export_workspace, read_table
    from arena.stats.agreement import agreement_report

    store = demo_metrics_store
    report = agreement_report(
        store.votes_frame(),
        store.scores_frame(),
        np.random.default_rng(0),
        images=store.images_frame(),
        rounds=50,
        model_metrics=store.model_metrics_frame(),
    )
    corr = report.correlations.set_index("metric")
    for metric in MODEL_LEVEL:
        assert corr.loc[metric, "level"] == "model"
        assert corr.loc[metric, "n_models"] == len(DEMO_MODELS)
    models = report.models.set_index("model")
    fid = models["fid_value"]
    expect = stats.spearmanr(-fid, models["human_rating"]).statistic
    assert corr.loc["fid", "spearman"] == pytest.approx(expect)
    # The Agreement tab: the rows, the label and the scatter panels.
    from arena.reports.agreement import AgreementService
    from arena.ui.agreement_tab import agreement_outputs

    service = AgreementService(store.with_settings(bootstrap_rounds=20))
    summary, _, _, shown, scatter, *_ = agreement_outputs(service)
    assert "random-weight stand-in extractors" in summary
    assert set(shown.loc[shown.Level == "model", "Metric"]) == set(MODEL_LEVEL)
    titles = {ax.get_title() for ax in scatter.axes}
    assert {f"{m} [demo-random]" for m in MODEL_LEVEL} <= titles and "anomaly" in titles
    export_workspace(store, tmp_path, rounds=20)
    table = read_table(tmp_path / "model_metrics.csv")
    assert len(table) == len(DEMO_MODELS) * len(MODEL_LEVEL)
    # diversity has no reference (an empty CSV field reads back as missing)
    assert set(table.reference.fillna("")) == {REFERENCE_MODEL, ""}
    assert table.extractor.str.endswith("+demo-random").all()
    assert "random-weight stand-in" in (tmp_path / "report.html").read_text()


@pytest.mark.slow
def test_demo_model_metrics_rerun_reuses_the_cache_and_repeats_the_numbers(demo_metrics_store):
    """The stand-in weights are rewritten from the seed with the same fingerprint, so the
    cached features are reused and the numbers come out identical."""
    from sqlalchemy import func, select

    from arena.demo.model_metrics import demo_model_metrics
    from arena.storage import db

    store = demo_metrics_store
    before = store.model_metrics_frame().set_index(["model", "metric"])["value"]
    with store.session() as s:
        n_features = s.scalar(select(func.count(db.Feature.image_id)))
    demo_model_metrics(store, seed=0)
    after = store.model_metrics_frame().set_index(["model", "metric"])["value"]
    with store.session() as s:
        assert s.scalar(select(func.count(db.Feature.image_id))) == n_features
    np.testing.assert_allclose(after.sort_index(), before.sort_index(), rtol=1e-9)


def test_demo_model_metrics_refuses_a_workspace_without_the_demo(store):
    from arena.demo.model_metrics import DEMO_WEIGHTS_FOLDER, demo_model_metrics

    store.add_model("mine", "import")
    with pytest.raises(StoreError, match=r"not a demo workspace.*demo-real"):
        demo_model_metrics(store)
    assert not (store.workspace / DEMO_WEIGHTS_FOLDER).exists()  # nothing written
