"""Tag accuracy: a tiny ONNX tagger built with the onnx helper API and a small selected_tags.csv.

The tagger has the real model's interface (NHWC float32 input of a fixed size
read from the graph, one sigmoid probability per CSV row). Reference values come
from running onnxruntime by hand on hand-built BGR arrays.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from scoring.metrics.base import get_metric
from scoring.metrics.tags import (
    CPU,
    CUDA,
    TAGGER_REPO,
    THRESHOLD,
    TagAccuracy,
    load_tag_table,
    parse_prompt_tags,
    per_model_tag_accuracy,
    prepare_tagger_image,
    providers_for,
    tag_accuracy,
    tag_hits,
    tag_hits_frame,
)
from scoring.testing.tiny_scorers import write_tag_csv, write_tagger_onnx, write_tiny_tagger
from scoring.weights import MissingWeightsError, WeightSources

# (name, category): general 0, character 4, rating 9 — like the real file's three kinds.
TAGS = [
    ("general", 9),
    ("sensitive", 9),
    ("questionable", 9),
    ("explicit", 9),
    ("1girl", 0),
    ("solo", 0),
    ("long_hair", 0),
    ("smile", 0),
    ("blue_eyes", 0),
    ("red_hair", 0),
    ("^_^", 0),
    (":d", 0),
    ("shirt_(tied)", 0),
    ("masterpiece", 0),  # not in the real vocabulary; a quality word must not count anyway
    ("hatsune_miku", 4),
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_tiny_tagger(tmp_path_factory.mktemp("tagger"), tags=TAGS, size=32)


@pytest.fixture
def metric(folder):
    return TagAccuracy.from_pretrained(folder)


# -- prompt parsing --------------------------------------------------------------------

PARSE_TABLE = [
    ("1girl, solo, long hair", ["1girl", "solo", "long_hair"]),
    (
        "(long hair:1.2), [smile], ((blue eyes)), {red hair}",
        ["long_hair", "smile", "blue_eyes", "red_hair"],
    ),
    ("(long hair : 0.8)", ["long_hair"]),
    ("(red hair, blue eyes:1.3)", ["red_hair", "blue_eyes"]),
    ("shirt \\(tied\\)", ["shirt_(tied)"]),
    ("(shirt \\(tied\\):1.1)", ["shirt_(tied)"]),
    ("<lora:animeStyle_v2:0.8>, 1girl,<lyco:foo-bar:1>solo", ["1girl", "solo"]),
    ("<hypernet:x:1> smile", ["smile"]),
    ("^_^, :D, :3, >_<, <o>_<o>", ["^_^", ":d", ":3", ">_<", "<o>_<o>"]),
    ("(:d:1.2), (:3)", [":d", ":3"]),
    ("1girl, 1girl, 1GIRL, solo, 1girl", ["1girl", "solo"]),
    ("Long   Hair,\tBlue_Eyes", ["long_hair", "blue_eyes"]),
    ("masterpiece, best quality, 1girl", ["masterpiece", "best_quality", "1girl"]),
    ("1girl BREAK solo\nsmile", ["1girl", "solo", "smile"]),
    ("(tag:1.2", ["tag"]),
    ("ratio 16:9, time 12:30", ["ratio_16:9", "time_12:30"]),  # no brackets: not a weight
    ("", []),
    (" , ,, ()", []),
]


@pytest.mark.parametrize(("prompt", "tags"), PARSE_TABLE)
def test_parse_prompt_tags(prompt, tags):
    assert parse_prompt_tags(prompt) == tags


def test_countable_tags_are_general_vocabulary_without_quality_words(folder):
    table = load_tag_table(folder / "selected_tags.csv")
    prompt = (
        "masterpiece, best quality, (1girl:1.1), hatsune miku, general, unknown tag, :D, score_9"
    )
    known, n_parsed = table.countable(prompt)
    # masterpiece (quality word), best_quality (unknown), hatsune_miku (character),
    # general (rating), unknown_tag and score_9 do not count; positions are in the prompt.
    assert [(t, p) for t, p, _ in known] == [("1girl", 2), (":d", 6)]
    assert [table.names[i] for _, _, i in known] == ["1girl", ":d"]
    assert n_parsed == 8


# -- the math ------------------------------------------------------------------------


def test_threshold_is_inclusive_and_accuracy_is_found_over_prompted():
    probs = np.array([0.35, 0.3499999, 0.9, 0.0], dtype=np.float64)
    hits = tag_hits(probs, [0, 1, 2, 3])
    assert hits.tolist() == [True, False, True, False]
    assert tag_accuracy(hits) == 0.5
    assert tag_hits(probs, [2, 2]).tolist() == [True, True]
    assert np.isnan(tag_accuracy(tag_hits(probs, [])))
    assert THRESHOLD == 0.35


def test_per_model_macro_average():
    scores = [1.0, 0.0, np.nan, 0.5, 0.25, 1.0, np.nan]
    models = ["a", "a", "a", "b", "b", "b", "c"]
    frame = per_model_tag_accuracy(scores, models).set_index("model")
    assert frame.loc["a", "tag_accuracy"] == pytest.approx(0.5)
    assert frame.loc["b", "tag_accuracy"] == pytest.approx((0.5 + 0.25 + 1.0) / 3)
    assert np.isnan(frame.loc["c", "tag_accuracy"])
    assert frame["n_images"].tolist() == [3, 3, 1]
    assert frame["n_scored"].tolist() == [2, 3, 0]
    assert frame["n_skipped"].tolist() == [1, 0, 1]


# -- preprocessing -------------------------------------------------------------------


def test_pads_with_white_centred_and_feeds_bgr():
    image = Image.new("RGB", (32, 16), (200, 10, 30))  # 32 wide, 16 tall; size 32: no resize
    x = prepare_tagger_image(image, 32)
    assert x.shape == (32, 32, 3) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:8], 255.0)
    np.testing.assert_array_equal(x[24:], 255.0)
    np.testing.assert_array_equal(
        x[8:24].reshape(-1, 3), np.tile([30.0, 10.0, 200.0], (16 * 32, 1))
    )


def test_odd_padding_puts_the_extra_column_right():
    image = Image.new("RGB", (5, 8), (0, 0, 0))
    x = prepare_tagger_image(image, 8)
    assert (x[:, :1] == 255).all() and (x[:, 1:6] == 0).all() and (x[:, 6:] == 255).all()


def test_alpha_is_composited_on_white():
    arr = np.zeros((16, 16, 4), dtype=np.uint8)
    arr[..., :3] = (0, 0, 255)  # blue
    arr[:, :8, 3] = 0  # left half transparent -> white
    arr[:, 8:, 3] = 255  # right half opaque blue
    x = prepare_tagger_image(Image.fromarray(arr, "RGBA"), 16)
    np.testing.assert_array_equal(x[:, :8], 255.0)
    np.testing.assert_array_equal(x[:, 8:].reshape(-1, 3), np.tile([255.0, 0.0, 0.0], (128, 1)))
    half = arr.copy()
    half[..., 3] = 128
    y = prepare_tagger_image(Image.fromarray(half, "RGBA"), 16)
    np.testing.assert_allclose(y[0, 0], [255.0, 127.0, 127.0], atol=1.0)  # BGR of 50% blue on white


def test_resize_is_pil_bicubic_of_the_white_padded_square():
    rng = np.random.default_rng(5)
    arr = rng.integers(0, 256, (40, 64, 3), dtype=np.uint8)
    square = np.full((64, 64, 3), 255, dtype=np.uint8)
    square[12:52] = arr
    want = np.asarray(Image.fromarray(square).resize((32, 32), Image.BICUBIC), np.float32)
    np.testing.assert_array_equal(prepare_tagger_image(Image.fromarray(arr), 32), want[:, :, ::-1])


# -- the metric with the tiny tagger ---------------------------------------------------


def _hand_array(rgb: np.ndarray, size: int) -> np.ndarray:
    """White square canvas, image pasted centred, BGR float32 (no resize needed)."""
    h, w, _ = rgb.shape
    canvas = np.full((size, size, 3), 255, dtype=np.float32)
    top, left = (size - h) // 2, (size - w) // 2
    canvas[top : top + h, left : left + w] = rgb
    return canvas[:, :, ::-1]


def test_scores_and_details_match_onnxruntime_by_hand(folder, metric):
    import onnxruntime

    rng = np.random.default_rng(6)
    rgbs = [
        rng.integers(0, 256, (32, 20, 3), dtype=np.uint8),
        rng.integers(0, 256, (17, 32, 3), dtype=np.uint8),
        rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
    ]
    rgba = np.dstack([rgbs[2], np.full((32, 32), 255, np.uint8)])  # opaque RGBA: same pixels
    images = [Image.fromarray(rgbs[0]), Image.fromarray(rgbs[1]), Image.fromarray(rgba, "RGBA")]
    prompts = [
        "masterpiece, 1girl, solo, (long hair:1.2), smile, blue eyes, red hair, ^_^, :d",
        "hatsune miku, general, best quality, lots of unknown words",
        "1girl, shirt \\(tied\\), <lora:x:1>, 1girl",
    ]
    values, details = metric.score_with_details(metric.prepare(images), prompts)

    session = onnxruntime.InferenceSession(str(folder / "model.onnx"))
    batch = np.stack([_hand_array(rgb, 32) for rgb in rgbs])
    probs = session.run(None, {"input_1:0": batch})[0]
    table = load_tag_table(folder / "selected_tags.csv")
    index = {name: i for i, name in enumerate(table.names)}

    want0 = ["1girl", "solo", "long_hair", "smile", "blue_eyes", "red_hair", "^_^", ":d"]
    got0 = details[0]["tags"]
    assert [d["tag"] for d in got0] == want0
    assert [d["position"] for d in got0] == [1, 2, 3, 4, 5, 6, 7, 8]
    np.testing.assert_allclose(
        [d["probability"] for d in got0], [probs[0, index[t]] for t in want0], atol=1e-5
    )
    hits0 = [bool(probs[0, index[t]] >= 0.35) for t in want0]
    assert [d["hit"] for d in got0] == hits0
    assert 0 < sum(hits0) < len(hits0)  # the tiny tagger finds some tags and misses others
    assert values[0] == pytest.approx(sum(hits0) / len(hits0), abs=1e-12)
    assert details[0]["n_found"] == sum(hits0) and details[0]["n_countable"] == 8

    # No countable tag: skipped (NaN), said so, and counted.
    assert np.isnan(values[1]) and details[1]["tags"] == [] and "skipped" in details[1]
    assert metric.skipped == 1

    hits2 = [bool(probs[2, index[t]] >= 0.35) for t in ["1girl", "shirt_(tied)"]]
    assert values[2] == pytest.approx(np.mean(hits2), abs=1e-12)
    assert [d["position"] for d in details[2]["tags"]] == [0, 1]

    # score() equals score_with_details' values; details are JSON-able.
    np.testing.assert_array_equal(metric.score(images, prompts), values)
    json.dumps(details)
    frame = tag_hits_frame(details, ["a", "b", "c"])
    assert len(frame) == 10 and set(frame["image"]) == {"a", "c"}
    assert frame.loc[frame["image"] == "a", "n_countable"].unique().tolist() == [8]


def test_input_size_is_read_from_the_graph(tmp_path):
    write_tiny_tagger(tmp_path, seed=1, tags=TAGS, size=48)
    metric = TagAccuracy.from_pretrained(tmp_path / "model.onnx")  # the .onnx file itself
    assert metric.size == 48
    fn = metric.preprocessor()
    assert fn(Image.new("RGB", (100, 30))).shape == (48, 48, 3)
    import pickle

    assert pickle.loads(pickle.dumps(fn))(Image.new("RGB", (7, 9))).shape == (48, 48, 3)


def test_fixed_batch_graph_runs_one_image_at_a_time(tmp_path, folder, metric):
    write_tiny_tagger(tmp_path, tags=TAGS, size=32, fixed_batch=True)
    single = TagAccuracy.from_pretrained(tmp_path)
    rng = np.random.default_rng(7)
    images = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(3)]
    prompts = ["1girl, solo, smile"] * 3
    np.testing.assert_allclose(single.score(images, prompts), metric.score(images, prompts))
    assert metric.score([], []).shape == (0,)


def test_registered(metric):
    assert get_metric("tags") is TagAccuracy
    with pytest.raises(ValueError, match="one prompt per image"):
        metric.score([Image.new("RGB", (4, 4))], [])


# -- providers: the device asked for, or a clear error --------------------------------


def test_cuda_n_asks_onnxruntime_for_device_n_then_cpu():
    gpu_build = [CUDA, CPU]
    assert providers_for("cuda:3", gpu_build) == [(CUDA, {"device_id": 3}), CPU]
    assert providers_for("cuda", gpu_build) == [(CUDA, {"device_id": 0}), CPU]
    assert providers_for("cpu", gpu_build) == [CPU]
    for device in ("mps", "cuda:x", "gpu"):
        with pytest.raises(ValueError, match="runs on cpu, cuda or cuda:N"):
            providers_for(device, gpu_build)


def test_cuda_with_the_cpu_onnxruntime_build_is_an_error_naming_the_fix(folder):
    import onnxruntime

    if CUDA in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime is a GPU build")
    with pytest.raises(ValueError) as err:
        TagAccuracy.from_pretrained(folder, device="cuda")
    message = str(err.value)
    assert "has no CUDAExecutionProvider" in message and "CPUExecutionProvider" in message
    assert "pip uninstall -y onnxruntime && pip install onnxruntime-gpu" in message
    assert "arena score --metrics tags --device cpu" in message


class ReportedSession:
    """A real CPU session that reports the providers a GPU build would (no CUDA here)."""

    def __init__(self, real, providers, options):
        self.real, self.providers, self.options = real, providers, options

    def __getattr__(self, name):
        return getattr(self.real, name)

    def get_providers(self):
        return self.providers

    def get_provider_options(self):
        return self.options


@pytest.fixture
def gpu_build(monkeypatch):
    """onnxruntime as a GPU build: CUDA available; sessions report what ``reported`` says."""
    import onnxruntime

    real_session = onnxruntime.InferenceSession
    state = {"asked": None, "reported": ([CPU], {CPU: {}})}

    def session(path, providers=None, **kwargs):
        state["asked"] = providers
        real = real_session(path, providers=[CPU])
        return ReportedSession(real, *state["reported"])

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(onnxruntime, "InferenceSession", session)
    return state


def test_a_session_that_fell_back_to_the_cpu_is_an_error(folder, gpu_build):
    """onnxruntime-gpu whose CUDA libraries fail to load only warns and runs on the CPU."""
    gpu_build["reported"] = ([CPU], {CPU: {}})
    with pytest.raises(ValueError, match="did not start CUDAExecutionProvider") as err:
        TagAccuracy.from_pretrained(folder, device="cuda:2")
    assert "cuDNN" in str(err.value) and "--device cpu" in str(err.value)
    assert gpu_build["asked"] == [(CUDA, {"device_id": 2}), CPU]


def test_cuda_n_is_checked_and_reported_in_the_details(folder, gpu_build, metric):
    gpu_build["reported"] = ([CUDA, CPU], {CUDA: {"device_id": "3"}, CPU: {}})
    on_gpu = TagAccuracy.from_pretrained(folder, device="cuda:3")
    assert on_gpu.provider == "CUDAExecutionProvider (device_id 3)"
    assert on_gpu.runtime == "onnxruntime CUDAExecutionProvider (device_id 3)"
    image = Image.new("RGB", (32, 32), (200, 40, 90))
    _values, details = on_gpu.score_with_details(on_gpu.prepare([image]), ["1girl, smile"])
    assert details[0]["provider"] == "CUDAExecutionProvider (device_id 3)"

    gpu_build["reported"] = ([CUDA, CPU], {CUDA: {"device_id": "0"}, CPU: {}})
    with pytest.raises(ValueError, match="on CUDA device 0, not 3"):
        TagAccuracy.from_pretrained(folder, device="cuda:3")


def test_cpu_runs_on_and_reports_the_cpu_provider(folder, metric, settings, capsys):
    from arena.cli import main
    from arena.storage.store import PromptRow, Store

    assert metric.provider == CPU and metric.runtime == f"onnxruntime {CPU}"
    image = Image.new("RGB", (32, 32), (10, 120, 220))
    _values, details = metric.score_with_details(metric.prepare([image]), ["solo, smile"])
    assert details[0]["provider"] == CPU

    store = Store(settings)
    store.add_prompts([PromptRow("1girl, smile", "0")], "set")
    model = store.add_model("alpha", "import")
    store.add_image(model, store.prompt_ids("set")[("set", "0")], store.images.put_image(image))
    store.close()
    argv = ["-w", str(settings.workspace_path), "score", "--metrics", "tags", "--device", "cpu"]
    assert main([*argv, "--weights", f"tags={folder}", "--no-progress"]) == 0
    assert f"tags ({TagAccuracy.version}; onnxruntime {CPU}) on cpu" in capsys.readouterr().out


def test_mismatched_or_broken_files_give_clear_errors(tmp_path):
    write_tagger_onnx(tmp_path / "model.onnx", 32, len(TAGS) + 1)
    write_tag_csv(tmp_path / "selected_tags.csv", TAGS)
    with pytest.raises(ValueError, match=r"outputs but selected_tags\.csv lists"):
        TagAccuracy.from_pretrained(tmp_path)

    (tmp_path / "model.onnx").write_bytes(b"not onnx")
    with pytest.raises(ValueError, match="not a loadable ONNX model"):
        TagAccuracy.from_pretrained(tmp_path)

    bad = tmp_path / "bad"
    bad.mkdir()
    write_tagger_onnx(bad / "model.onnx", 32, len(TAGS))
    (bad / "selected_tags.csv").write_text("tag_id,label\n1,1girl\n")
    with pytest.raises(ValueError, match="lacks the column"):
        TagAccuracy.from_pretrained(bad)


def test_missing_weights_name_the_files(tmp_path, monkeypatch, folder):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    sources = WeightSources(tmp_path / "weights")
    with pytest.raises(MissingWeightsError) as err:
        TagAccuracy.from_pretrained(sources=sources)
    assert "model.onnx" in str(err.value) and TAGGER_REPO in str(err.value)

    only_model = tmp_path / "only_model"
    only_model.mkdir()
    (only_model / "model.onnx").write_bytes((folder / "model.onnx").read_bytes())
    with pytest.raises(MissingWeightsError, match=r"selected_tags\.csv"):
        TagAccuracy.from_pretrained(only_model)

    # The weights folder layout <dir>/<repo_id>/<file> is found.
    repo = tmp_path / "weights" / TAGGER_REPO
    repo.mkdir(parents=True)
    for name in ("model.onnx", "selected_tags.csv"):
        (repo / name).write_bytes((folder / name).read_bytes())
    assert TagAccuracy.from_pretrained(sources=sources).size == 32


def test_the_scoring_job_stores_values_and_per_tag_details(store, folder):
    """Through the real runner: worker-process preprocessing, NaN as NULL, details stored."""
    from sqlalchemy import select

    from arena.storage import db
    from arena.storage.store import PromptRow
    from scoring.metrics.runner import build_metrics, run

    prompts = ["1girl, solo, (smile:1.2)", "masterpiece, hatsune miku", "long hair, ^_^"]
    model = store.add_model("alpha", "import")
    store.add_prompts([PromptRow(p, str(k)) for k, p in enumerate(prompts)], "set")
    pids = store.prompt_ids("set")
    rng = np.random.default_rng(8)
    images = []
    for k in range(len(prompts)):
        image = Image.fromarray(rng.integers(0, 256, (20 + 6 * k, 32, 3), dtype=np.uint8))
        images.append(image)
        store.add_image(model, pids[("set", str(k))], store.images.put_image(image), seed=k)

    metrics = build_metrics(["tags"], weights={"tags": str(folder)})
    summary = run(store, metrics, batch_size=2, num_workers=2, progress=False)
    assert summary.rows_written == {"tags": 3}

    with store.session() as s:
        rows = s.execute(
            select(db.Score.value, db.Score.details, db.Score.version).order_by(db.Score.image_id)
        ).all()
    want, want_details = TagAccuracy.from_pretrained(folder).score_with_details(
        [prepare_tagger_image(im, 32) for im in images], prompts
    )
    assert [r.version for r in rows] == [TagAccuracy.version] * 3
    assert rows[1].value is None and "skipped" in rows[1].details
    assert [r.details["provider"] for r in rows] == [CPU] * 3
    for row, value, detail in zip(rows, want, want_details, strict=True):
        if row.value is not None:
            assert row.value == pytest.approx(value, abs=1e-12)
        assert [t["tag"] for t in row.details["tags"]] == [t["tag"] for t in detail["tags"]]
        assert [t["hit"] for t in row.details["tags"]] == [t["hit"] for t in detail["tags"]]
