"""Feature cache, `arena reference add` and `arena distribution` on a tiny real workspace.

Tiny random-weight extractors are written in the real file layouts into a weights
folder (``ARENA_WEIGHTS_DIR``) and loaded by the real loading code.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from arena.cli import main
from arena.storage.store import PromptRow
from scoring.distribution.feature_cache import cached_features
from scoring.distribution.features import ClipL336Extractor, DinoExtractor, InceptionExtractor
from scoring.testing.tiny_extractors import write_all


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    write_all(root)
    return root


def _image(rng, tint):
    arr = rng.integers(0, 256, (48, 48, 3)).astype(np.float64)
    return Image.fromarray(np.clip(arr * 0.5 + tint, 0, 255).astype(np.uint8))


@pytest.fixture
def workspace(store, tmp_path, weights_dir, monkeypatch):
    monkeypatch.setenv("ARENA_WEIGHTS_DIR", str(weights_dir))  # the CLI's weights_dir setting
    rng = np.random.default_rng(0)
    store.add_prompts([PromptRow("a cat", "p1"), PromptRow("a dog", "p2")], "set")
    pids = store.prompt_ids("set")
    for model, tint in (("sharp", 0.0), ("dull", 90.0)):
        mid = store.add_model(model, "import")
        for ext in ("p1", "p2"):
            for seed in (0, 1):
                stored = store.images.put_image(_image(rng, tint))
                store.add_image(mid, pids[("set", ext)], stored, seed=seed)
    real = tmp_path / "real"
    (real / "sub").mkdir(parents=True)
    for k in range(4):
        _image(rng, 10.0).save(real / ("sub" if k % 2 else "") / f"r{k}.png")
    (real / "notes.txt").write_text("not an image")
    return store, real


def _cli(store, *argv):
    return main(["--workspace", str(store.workspace), *argv])


def test_feature_cache_second_run_extracts_nothing(workspace, weights_dir):
    store, _ = workspace
    ids = store.images_frame().image_id.tolist()
    extractor = DinoExtractor.load(weights_dir / "facebook" / "dinov2-large")
    first = cached_features(store, extractor, ids, batch_size=3)
    assert extractor.calls == 3 and extractor.images == len(ids)
    again = cached_features(store, extractor, ids[::-1], batch_size=3)
    assert extractor.calls == 3 and extractor.images == len(ids)  # nothing recomputed
    assert np.array_equal(again, first[::-1])
    # Same architecture, other weights: another key, its own rows.
    other = DinoExtractor.load(write_tiny(weights_dir))
    assert other.key != extractor.key
    cached_features(store, other, ids[:2])
    assert other.images == 2


def write_tiny(weights_dir):
    from scoring.testing.tiny_extractors import write_tiny_dinov2

    return write_tiny_dinov2(weights_dir / "other-dino", seed=1)


def test_inception_and_clip_load_through_real_code(weights_dir):
    import torch
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    path = weights_dir / "toshas" / "torch-fidelity" / InceptionExtractor.weight_file.filename
    inception = InceptionExtractor.load(path)
    rng = np.random.default_rng(1)
    images = [_image(rng, 0.0), _image(rng, 50.0)]
    feats = inception.features_of(images)
    reference = FeatureExtractorInceptionV3(
        "ref", ["2048"], feature_extractor_weights_path=str(path)
    )
    pixels = torch.stack([torch.from_numpy(np.array(i)).permute(2, 0, 1) for i in images])
    with torch.no_grad():
        expected = reference(pixels)[0].numpy()
    assert feats.shape == (2, 2048) and np.allclose(feats, expected, rtol=1e-4, atol=1e-5)
    clip = ClipL336Extractor.load(weights_dir)
    emb = clip.features_of(images)
    assert emb.shape == (2, 64) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="not torch-fidelity's Inception-v3"):
        bad = weights_dir / "bad.pth"
        torch.save({"x": torch.zeros(1)}, bad)
        InceptionExtractor.load(bad)


def test_reference_and_distribution_round_trip(workspace, capsys):
    store, real = workspace
    assert _cli(store, "reference", "add", str(real), "--set", "real", "--workers", "1") == 0
    out = capsys.readouterr().out
    assert "4 added" in out and "1 skipped" not in out  # notes.txt is not an image name
    assert _cli(store, "reference", "add", str(real), "--set", "real", "--workers", "1") == 0
    assert "4 already present" in capsys.readouterr().out
    assert "real" not in store.model_names()  # never a rated model
    argv = ["distribution", "--metrics", "cmmd,fd-dino,diversity", "--reference", "real"]
    argv += ["--device", "cpu", "--batch-size", "4", "--num-workers", "0", "--no-progress"]
    assert _cli(store, *argv) == 0
    printed = capsys.readouterr().out
    assert "fd-dino" in printed and "fewer than 10,000" in printed
    frame = store.model_metrics_frame(reference="real")
    assert set(frame.metric) == {"cmmd", "fd-dino", "diversity"}
    assert set(frame.model) == {"sharp", "dull"}
    # Each number carries its metric's direction: distances better low, diversity high.
    from scoring.distribution.run import HIGHER_IS_BETTER

    assert (frame.higher_is_better == frame.metric.map(HIGHER_IS_BETTER)).all()
    assert set(frame.higher_is_better) == {True, False}
    row = frame[(frame.model == "sharp") & (frame.metric == "fd-dino")].iloc[0]
    assert row.n == 4 and row.reference == "real" and "biased" in row.warning
    div = frame[(frame.model == "dull") & (frame.metric == "diversity")].iloc[0]
    assert div.reference == "" and div.n == 2 and div.value > 0
    # The second run reuses every cached feature (the rows are not recomputed).
    from arena.storage import db

    with store.session() as s:
        count = s.query(db.Feature).count()
    assert _cli(store, *argv) == 0
    with store.session() as s:
        assert s.query(db.Feature).count() == count == 12 + 12  # clip + dino rows


def test_distribution_errors_are_clear(workspace, capsys):
    store, real = workspace
    assert _cli(store, "distribution", "--reference", "nope", "--device", "cpu") == 2
    assert "unknown reference set 'nope'" in capsys.readouterr().err
    argv = ["distribution", "--reference", "sharp", "--metrics", "cmmd", "--device", "cpu"]
    assert _cli(store, *argv) == 2
    assert "not a reference set" in capsys.readouterr().err
    assert _cli(store, "distribution", "--reference", "x", "--metrics", "psnr") == 2
    assert "unknown model-level metric 'psnr'" in capsys.readouterr().err
    assert _cli(store, "reference", "add", str(real / "missing"), "--set", "r") == 2
    assert "no such folder" in capsys.readouterr().err


def test_kid_fid_and_anomaly_through_the_job(workspace, weights_dir):
    from scoring.distribution.run import run
    from scoring.weights import WeightSources

    store, real = workspace
    from arena.intake.reference import add_reference_folder

    add_reference_folder(store, real, "real")
    results = run(
        store,
        ["kid", "fid", "as"],
        "real",
        models=["dull"],
        batch_size=8,
        sources=WeightSources(weights_dir),  # what `arena distribution` passes from settings
        progress=False,
        kid_subsets=5,
    )
    by = {r.metric: r for r in results}
    assert by["kid"].details["subset_size"] == 4 and "fewer than 1000" in by["kid"].warning
    assert by["kid"].std is not None and by["fid"].value >= 0
    assert 0 <= by["as"].value <= 1 and by["as"].details["n_reference"] == 4
    assert by["as"].details["mean_as_i"] > 0
    # Only the compared model's and the reference set's images got their AS_i (the
    # attack costs ~40 DINOv2 passes per image): "sharp" was not asked for.
    images = store.images_frame()
    asked = set(images.image_id[images.model.isin(["dull", "real"])])
    scores = store.scores_frame(["anomaly"])
    assert len(asked) == 8 and set(scores.image_id) == asked and len(scores) == 8


def test_inception_batches_a_mixed_size_set_by_size(store, weights_dir):
    """Inception takes each image at its own size. Two sizes interleaved, batches of 3:
    in id order every batch mixes both (two forward passes each); ordered by size, each
    batch is one shape. Features and their order are those of one image at a time."""
    rng = np.random.default_rng(7)
    mid = store.add_model("mixed", "import")
    ids, images = [], []
    for k in range(12):
        h, w = (40, 56) if k % 2 else (48, 32)
        images.append(Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)))
        ids.append(store.add_image(mid, None, store.images.put_image(images[-1]), seed=k))
    path = weights_dir / "toshas" / "torch-fidelity" / InceptionExtractor.weight_file.filename
    by_size = InceptionExtractor.load(path)
    feats = cached_features(store, by_size, ids, batch_size=3)
    assert by_size.calls == 4 and by_size.passes == 4  # 2 sizes x ceil(6 / 3)
    in_id_order = InceptionExtractor.load(path).tagged("unsorted")  # its own cache rows
    in_id_order.own_size = False
    unsorted = cached_features(store, in_id_order, ids, batch_size=3)
    assert in_id_order.calls == 4 and in_id_order.passes == 8  # what it cost before
    one_by_one = np.concatenate([by_size.features_of([img]) for img in images])
    np.testing.assert_allclose(feats, one_by_one, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(feats, unsorted, rtol=1e-5, atol=1e-6)
    assert np.array_equal(cached_features(store, by_size, ids[::-1]), feats[::-1])
