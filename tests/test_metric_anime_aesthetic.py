"""Anime aesthetic: a tiny ONNX model with the real export's interface (input ``img``,
NCHW, fixed batch of one; output ``score``).

The reference route re-implements the Space's ``predict`` (skytnt/anime-aesthetic-predict,
app.py) line by line, with ``cv2.resize``'s bilinear written out pixel by pixel from
OpenCV's resize.cpp instead of OpenCV, and runs the same ONNX session by hand.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from PIL import Image

from scoring.metrics.anime_aesthetic import (
    ANIME_AESTHETIC,
    AnimeAesthetic,
    fitted_size,
    prepare_anime_image,
    resize_linear,
)
from scoring.metrics.base import get_metric
from scoring.metrics.tags import CPU, CUDA
from scoring.testing.tiny_iqa import write_anime_aesthetic_onnx
from scoring.testing.tiny_scorers import write_tagger_onnx
from scoring.weights import MissingWeightsError, WeightSources

SIZE = 32


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return write_anime_aesthetic_onnx(tmp_path_factory.mktemp("anime") / "model.onnx", SIZE)


@pytest.fixture(scope="module")
def metric(model_path):
    return AnimeAesthetic.from_pretrained(model_path)


# -- the reference, written out ---------------------------------------------------------


def cv2_resize_linear(img: np.ndarray, dsize: tuple[int, int]) -> np.ndarray:
    """``cv2.resize(img, (w, h))`` with the default INTER_LINEAR, pixel by pixel, as
    OpenCV's resize.cpp computes it: ``fx = (float)((dx + 0.5) * scale_x - 0.5)``,
    ``sx = floor(fx)``; left of pixel 0 or right of the last pixel the edge pixel is taken
    whole; x first, then y."""
    width, height = dsize
    src_h, src_w = img.shape[:2]

    def taps(dst: int, src: int) -> list[tuple[int, int, float]]:
        scale = 1.0 / (dst / src)
        out = []
        for d in range(dst):
            f = float(np.float32((d + 0.5) * scale - 0.5))
            s = math.floor(f)
            f -= s
            if s < 0:
                s, f = 0, 0.0
            if s >= src - 1:
                s, f = src - 1, 0.0
            out.append((s, min(s + 1, src - 1), f))
        return out

    rows = np.zeros((src_h, width, img.shape[2]), dtype=np.float64)
    for dx, (s0, s1, f) in enumerate(taps(width, src_w)):
        rows[:, dx] = img[:, s0] * (1 - f) + img[:, s1] * f
    out = np.zeros((height, width, img.shape[2]), dtype=np.float64)
    for dy, (s0, s1, f) in enumerate(taps(height, src_h)):
        out[dy] = rows[s0] * (1 - f) + rows[s1] * f
    return out


def space_input(rgb: np.ndarray, s: int = SIZE) -> np.ndarray:
    """The Space's ``predict`` up to ``model.run``, for an RGB uint8 array (Gradio's input)."""
    img = rgb.astype(np.float32) / 255
    h, w = img.shape[:-1]
    h, w = (s, int(s * w / h)) if h > w else (int(s * h / w), s)
    ph, pw = s - h, s - w
    img_input = np.zeros([s, s, 3], dtype=np.float32)
    img_input[ph // 2 : ph // 2 + h, pw // 2 : pw // 2 + w] = cv2_resize_linear(img, (w, h))
    img_input = np.transpose(img_input, (2, 0, 1))
    return img_input[np.newaxis, :]


# (height, width): shrink, enlarge, tall, wide, square, odd pads, a truncated short side.
SHAPES = [(48, 20), (20, 48), (7, 10), (32, 32), (100, 64), (33, 50), (64, 21), (5, 5), (9, 7)]


@pytest.mark.parametrize(("height", "width"), SHAPES)
def test_preprocessing_is_the_spaces(height, width):
    rng = np.random.default_rng(height * 1000 + width)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    got = prepare_anime_image(Image.fromarray(rgb), SIZE)
    assert got.shape == (3, SIZE, SIZE) and got.dtype == np.float32
    np.testing.assert_allclose(got, space_input(rgb)[0], rtol=0, atol=2e-6)


@pytest.mark.parametrize(("height", "width"), SHAPES)
def test_resize_is_torch_bilinear_without_antialias(height, width):
    """A third implementation: PyTorch's bilinear (align_corners False, no antialias) uses
    OpenCV's INTER_LINEAR coordinates (its float32 source positions round apart from
    OpenCV's by up to ~3e-6 of a pixel value, hence the looser bound)."""
    import torch

    rng = np.random.default_rng(7)
    img = rng.random((height, width, 3), dtype=np.float32)
    h, w = fitted_size(height, width, SIZE)
    want = torch.nn.functional.interpolate(
        torch.from_numpy(img).permute(2, 0, 1)[None], size=(h, w), mode="bilinear"
    )[0].permute(1, 2, 0)
    got = resize_linear(np.ascontiguousarray(img.transpose(2, 0, 1)), h, w)
    np.testing.assert_allclose(got.transpose(1, 2, 0), want.numpy(), rtol=0, atol=1e-5)


def test_fitted_into_a_black_canvas_centred_odd_pixel_bottom_right():
    image = Image.new("RGB", (64, 30), (255, 255, 255))  # wide: 32 x int(32*30/64)=15
    x = prepare_anime_image(image, SIZE)
    assert fitted_size(30, 64, SIZE) == (15, 32)
    white = np.flatnonzero(x[0].max(axis=1) > 0)
    assert white.tolist() == list(range(8, 23))  # (32 - 15) // 2 = 8 rows above, 9 below
    np.testing.assert_array_equal(x[:, 8:23], 1.0)
    np.testing.assert_array_equal(x[:, :8], 0.0)
    np.testing.assert_array_equal(x[:, 23:], 0.0)
    tall = prepare_anime_image(Image.new("RGB", (30, 64), (255, 255, 255)), SIZE)
    np.testing.assert_array_equal(tall, x.transpose(0, 2, 1))


def test_channels_are_rgb_in_chw_and_alpha_is_dropped():
    rgba = np.zeros((SIZE, SIZE, 4), dtype=np.uint8)
    rgba[..., :3] = (255, 128, 0)
    rgba[..., 3] = 0  # fully transparent: Gradio's RGB input keeps the colour
    x = prepare_anime_image(Image.fromarray(rgba, "RGBA"), SIZE)
    np.testing.assert_allclose(x[:, 0, 0], [1.0, 128 / 255, 0.0], rtol=1e-6)


def test_an_extreme_aspect_ratio_keeps_one_pixel():
    assert fitted_size(1, 100, SIZE) == (1, 32)  # int(32 / 100) = 0 in the reference
    x = prepare_anime_image(Image.new("RGB", (100, 1), (255, 0, 0)), SIZE)
    assert np.flatnonzero(x[0].max(axis=1)).tolist() == [15]


# -- the metric through onnxruntime -------------------------------------------------------


def images_of(shapes, seed=3):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in shapes]


def test_scores_match_the_space_route_by_hand(model_path, metric):
    import onnxruntime

    images = images_of(SHAPES)
    session = onnxruntime.InferenceSession(str(model_path), providers=[CPU])
    want = [session.run(None, {"img": space_input(np.asarray(im))})[0].item() for im in images]
    got = metric.score(images)
    assert got.dtype == np.float64 and got.shape == (len(images),)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert np.ptp(got) > 0.05  # the tiny model tells these images apart
    print(f"anime-aesthetic vs the Space's route: max |diff| {np.abs(got - want).max():.1e}")


def test_batched_equals_one_by_one_and_a_free_batch_runs_once(tmp_path, metric):
    images = images_of(SHAPES, seed=4)
    batched = metric.score(images)
    single = np.array([metric.score([im])[0] for im in images])
    np.testing.assert_array_equal(batched, single)  # fixed batch of one: the same runs
    free = AnimeAesthetic.from_pretrained(
        write_anime_aesthetic_onnx(tmp_path / "model.onnx", SIZE, fixed_batch=False)
    )
    calls = []
    run = free.session.run
    free.session = type("Counting", (), {"run": lambda _s, *a: calls.append(1) or run(*a)})()
    np.testing.assert_allclose(free.score(images), batched, rtol=0, atol=1e-6)
    assert len(calls) == 1
    assert metric.score([]).shape == (0,)


def test_registered_and_described(metric):
    assert get_metric("anime-aesthetic") is AnimeAesthetic
    assert not AnimeAesthetic.needs_prompt and AnimeAesthetic.higher_is_better
    assert not AnimeAesthetic.reduced_precision and metric.precision == "fp32"
    assert metric.size == SIZE and metric.runtime == f"onnxruntime {CPU}"
    assert metric.version == AnimeAesthetic.version  # no precision suffix: always fp32


def test_input_size_is_read_from_the_graph_and_the_preprocessor_pickles(tmp_path):
    metric = AnimeAesthetic.from_pretrained(write_anime_aesthetic_onnx(tmp_path / "m.onnx", 48))
    fn = pickle.loads(pickle.dumps(metric.preprocessor()))
    assert metric.size == 48 and fn(Image.new("RGB", (70, 20))).shape == (3, 48, 48)


def test_missing_weights_name_the_file_and_every_place(tmp_path, monkeypatch, model_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    sources = WeightSources(tmp_path / "weights")
    with pytest.raises(MissingWeightsError) as err:
        AnimeAesthetic.from_pretrained(sources=sources)
    message = str(err.value)
    assert "'model.onnx'" in message and ANIME_AESTHETIC.repo_id in message
    assert str(tmp_path / "weights") in message and "--weights anime-aesthetic=" in message
    # The weights-folder layout <dir>/<repo_id>/model.onnx is found.
    repo = tmp_path / "weights" / ANIME_AESTHETIC.repo_id
    repo.mkdir(parents=True)
    (repo / "model.onnx").write_bytes(model_path.read_bytes())
    assert AnimeAesthetic.from_pretrained(sources=sources).size == SIZE


def test_wrong_files_give_one_clear_error(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"not onnx")
    with pytest.raises(ValueError, match=r"not a loadable ONNX model.*skytnt/anime-aesthetic"):
        AnimeAesthetic.from_pretrained(tmp_path)
    tagger = write_tagger_onnx(tmp_path / "tagger" / "model.onnx", SIZE, 5)  # NHWC, 5 outputs
    with pytest.raises(ValueError, match=r"input has shape \[.*expected NCHW"):
        AnimeAesthetic.from_pretrained(tagger)


def test_an_output_of_several_values_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    value = helper.make_tensor_value_info
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["img"], ["score"], axis=1)],
        "flat",
        [value("img", TensorProto.FLOAT, [1, 3, 8, 8])],
        [value("score", TensorProto.FLOAT, [1, 192])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "model.onnx"))
    with pytest.raises(ValueError, match=r"output has shape \[1, 192\]; expected one value"):
        AnimeAesthetic.from_pretrained(tmp_path)


def test_cuda_with_the_cpu_onnxruntime_names_this_metric(model_path):
    """The tagger's provider handling, with this metric's name in the error and the fix."""
    import onnxruntime

    if CUDA in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime is a GPU build")
    with pytest.raises(ValueError) as err:
        AnimeAesthetic.from_pretrained(model_path, device="cuda:1")
    message = str(err.value)
    assert message.startswith("metric 'anime-aesthetic' on cuda:1") and "tags" not in message
    assert "arena score --metrics anime-aesthetic --device cpu" in message
