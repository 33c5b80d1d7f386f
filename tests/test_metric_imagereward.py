"""ImageReward v1.0: tiny random weights in the real formats, against the reference package.

``tests/reference/imagereward.json`` holds what the ``image-reward`` package computes on
the same tiny weights (made in a separate venv by tests/reference/imagereward_reference.py):
its token ids, its preprocessed pixels at 64 positions per image, its scores and its
``inference_rank`` rewards. The weights are rebuilt here from the same seed; the stored
digest proves they are the same tensors.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scoring.metrics.base import get_metric
from scoring.metrics.imagereward import (
    REWARD_MEAN,
    REWARD_STD,
    ImageReward,
    preprocess,
    resize_and_crop,
)
from scoring.metrics.runner import build_metrics, run
from scoring.testing.tiny_imagereward import (
    IMAGEREWARD_REPO,
    REFERENCE_PROMPTS,
    TOKENIZER_REPO,
    reference_images,
    tiny_digest,
    tiny_med_config,
    tiny_state_dict,
    write_tiny_imagereward,
    write_vocab,
)
from scoring.weights import MissingWeightsError, WeightSources
from tests.metric_job_checks import kill_after_two_batches

FIXTURE = Path(__file__).parent / "reference" / "imagereward.json"


@pytest.fixture(scope="module")
def reference():
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A weights folder: THUDM/ImageReward/{ImageReward.pt, med_config.json},
    bert-base-uncased/vocab.txt."""
    folder = tmp_path_factory.mktemp("imagereward")
    write_tiny_imagereward(folder)
    return folder


@pytest.fixture(scope="module")
def metric(root):
    return ImageReward.from_pretrained(root)


def test_the_tiny_weights_are_the_fixtures(reference):
    assert tiny_digest() == reference["weights_digest"], (
        "the tiny ImageReward weights changed: regenerate tests/reference/imagereward.json "
        "as its script's docstring says"
    )
    assert reference["strict_load"] == {"missing": [], "unexpected": []}
    assert reference["constants"] == {"mean": REWARD_MEAN, "std": REWARD_STD}


def test_tokens_match_the_reference_tokenizer(reference, metric):
    for prompt, ids in reference["tokens"].items():
        got, mask = metric.tokens([prompt])
        assert got[0].tolist() == ids, prompt
        assert mask[0].tolist() == [int(i != 0) for i in ids]
    assert len(reference["tokens"][REFERENCE_PROMPTS[-1]]) == 35  # truncated, [SEP] kept


def test_preprocessing_matches_the_reference_on_every_size_and_mode(reference):
    samples = reference["pixel_samples"]
    for image, want in zip(reference_images(), reference["pixels"], strict=True):
        x = preprocess(image)
        assert tuple(x.shape) == (3, 224, 224) and x.dtype == torch.float32
        got = [float(x[c, i, j]) for c, i, j in samples]
        np.testing.assert_allclose(got, want["samples"], rtol=0, atol=1e-6)
        np.testing.assert_allclose(x.double().mean(dim=(1, 2)), want["mean"], atol=1e-6)
        np.testing.assert_allclose(x.double().abs().mean(dim=(1, 2)), want["abs_mean"], atol=1e-6)


def test_scores_match_the_reference_package(reference, metric):
    cases = reference["scores"]
    images = reference_images()
    got = metric.score(
        [images[c["image"]] for c in cases], [REFERENCE_PROMPTS[c["prompt"]] for c in cases]
    )
    want = np.array([c["score"] for c in cases])
    assert got.dtype == np.float64 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert want.std() > 0.3  # the tiny model separates images and prompts: the check bites
    rank = metric.score(images, [REFERENCE_PROMPTS[reference["rank_prompt"]]] * len(images))
    np.testing.assert_allclose(rank, reference["rank_scores"], rtol=0, atol=1e-5)


def test_batched_equals_one_by_one(metric):
    images = reference_images()
    prompts = [REFERENCE_PROMPTS[k % len(REFERENCE_PROMPTS)] for k in range(len(images))]
    batched = metric.score(images, prompts)
    single = [metric.score([im], [p])[0] for im, p in zip(images, prompts, strict=True)]
    np.testing.assert_allclose(batched, single, rtol=0, atol=1e-5)
    # the worker-side route: a pickled preprocessor, stacked, then score_inputs
    fn = pickle.loads(pickle.dumps(metric.preprocessor()))
    pixels = torch.stack([fn(im) for im in images])
    np.testing.assert_allclose(metric.score_inputs(pixels, prompts), batched, atol=1e-6)


def test_non_square_images_are_resized_on_the_short_side_and_centre_cropped():
    # 448 x 224: already 224 high, so only cropped: the middle 224 columns stay.
    arr = np.zeros((224, 448, 3), dtype=np.uint8)
    arr[:, :112] = 255  # left quarter white: cropped away
    arr[:, 112:336] = (10, 200, 30)
    arr[:, 336:] = 255
    out = np.asarray(resize_and_crop(Image.fromarray(arr)))
    assert out.shape == (224, 224, 3) and (out == (10, 200, 30)).all()
    # 100 x 300 (tall): width to 224, height int(224 * 300 / 100) = 672, rows 224..447 kept.
    tall = np.zeros((300, 100, 3), dtype=np.uint8)
    tall[100:200] = 255
    out = np.asarray(resize_and_crop(Image.fromarray(tall)))
    assert out.shape == (224, 224, 3) and out[10:-10].min() >= 250
    # Crop offsets round half to even, as torchvision's CenterCrop: 225 -> 0, 226 -> 1.
    for width, left in ((225, 0), (226, 1)):
        ramp = np.tile(np.arange(width, dtype=np.uint8), (224, 1))
        cropped = np.asarray(resize_and_crop(Image.fromarray(ramp, "L")))
        assert cropped[0, 0] == left


def test_rgba_is_resized_before_its_alpha_is_dropped():
    """The reference converts to RGB after resizing: PIL resizes RGBA premultiplied, so a
    transparent pixel's colour does not bleed into its neighbours."""
    arr = np.zeros((32, 32, 4), dtype=np.uint8)
    arr[..., 0] = 255
    arr[:, 16:, :3] = (0, 0, 255)
    arr[:, 16:, 3] = 0  # right half transparent blue
    image = Image.fromarray(arr, "RGBA")
    ours = preprocess(image)
    converted_first = preprocess(image.convert("RGB"))
    assert not torch.allclose(ours, converted_first, atol=1e-3)


def test_registered_with_its_contract(metric):
    assert get_metric("imagereward") is ImageReward
    assert ImageReward.needs_prompt and ImageReward.higher_is_better
    assert ImageReward.reduced_precision  # fp16 autocast on CUDA, version "+fp16"
    assert metric.version == "v1.0" and metric.precision == "fp32"
    assert [f.filename for f in ImageReward.weight_files] == [
        "ImageReward.pt",
        "med_config.json",
        "vocab.txt",
    ]
    with pytest.raises(ValueError, match="one prompt per image"):
        metric.score(reference_images()[:2], ["only one"])
    assert metric.score([], []).shape == (0,)


def test_half_precision_needs_cuda(root):
    with pytest.raises(ValueError, match="needs a CUDA device"):
        ImageReward.from_pretrained(root, dtype="fp16")


def test_prompts_are_tokenised_once(root):
    fresh = ImageReward.from_pretrained(root)
    images = reference_images()[:4]
    prompts = ["a cat", "a dog", "a cat", "a red bicycle"]
    first = fresh.score(images, prompts)
    assert sorted(fresh.token_cache) == ["a cat", "a dog", "a red bicycle"]
    kept = fresh.token_cache["a cat"]
    again = fresh.score(images[2:], prompts[2:])
    assert fresh.token_cache["a cat"] is kept
    np.testing.assert_allclose(again, first[2:], atol=1e-6)


def test_files_are_found_by_every_route(root, tmp_path, metric):
    image, prompt = reference_images()[:1], [REFERENCE_PROMPTS[0]]
    want = metric.score(image, prompt)
    folder = root / IMAGEREWARD_REPO
    vocab = root / TOKENIZER_REPO / "vocab.txt"
    routes = [
        ImageReward.from_pretrained(sources=WeightSources(root)),  # the weights folder
        ImageReward.from_pretrained(folder / "ImageReward.pt", processor=vocab),
        ImageReward.from_pretrained(folder, sources=WeightSources(root)),
    ]
    # everything in one folder: the vocabulary beside ImageReward.pt
    flat = tmp_path / "flat"
    flat.mkdir()
    for name in ("ImageReward.pt", "med_config.json"):
        (flat / name).write_bytes((folder / name).read_bytes())
    write_vocab(flat)
    routes.append(ImageReward.from_pretrained(flat / "ImageReward.pt"))
    # the vocabulary under the repo's current name, google-bert/bert-base-uncased
    moved = tmp_path / "moved"
    write_tiny_imagereward(moved)
    (moved / TOKENIZER_REPO / "vocab.txt").unlink()
    write_vocab(moved / "google-bert" / TOKENIZER_REPO)
    routes.append(ImageReward.from_pretrained(sources=WeightSources(moved)))
    for loaded in routes:
        np.testing.assert_allclose(loaded.score(image, prompt), want, atol=1e-6)


def test_missing_files_name_what_and_where(root, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    empty = tmp_path / "weights"
    with pytest.raises(MissingWeightsError) as err:
        ImageReward.from_pretrained(sources=WeightSources(empty))
    message = str(err.value)
    assert "ImageReward.pt" in message and "THUDM/ImageReward" in message
    assert str(empty) in message and "--weights imagereward=" in message
    with pytest.raises(MissingWeightsError, match=r"ImageReward\.pt"):
        ImageReward.from_pretrained(tmp_path / "nowhere")
    # the checkpoint alone: med_config.json is missing, then the vocabulary
    alone = tmp_path / "alone"
    alone.mkdir()
    checkpoint = (root / IMAGEREWARD_REPO / "ImageReward.pt").read_bytes()
    (alone / "ImageReward.pt").write_bytes(checkpoint)
    with pytest.raises(MissingWeightsError) as err:
        ImageReward.from_pretrained(alone / "ImageReward.pt", sources=WeightSources(empty))
    message = str(err.value)
    assert "med_config.json" in message and str(alone / "med_config.json") in message
    (alone / "med_config.json").write_text(json.dumps(tiny_med_config()))
    with pytest.raises(MissingWeightsError) as err:
        ImageReward.from_pretrained(alone / "ImageReward.pt", sources=WeightSources(empty))
    message = str(err.value)
    assert "vocab.txt" in message and "bert-base-uncased" in message
    assert "beside ImageReward.pt" in message and str(alone / "vocab.txt") in message
    assert "--weights imagereward=/path/to/vocab.txt" not in message


def _write(folder: Path, state=None, config=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(tiny_state_dict() if state is None else state, folder / "ImageReward.pt")
    (folder / "med_config.json").write_text(json.dumps(config or tiny_med_config()))
    write_vocab(folder)
    return folder / "ImageReward.pt"


def test_wrong_weights_give_one_clear_error(tmp_path):
    state = tiny_state_dict()
    cases = []
    garbage = _write(tmp_path / "garbage")
    garbage.write_bytes(b"not a checkpoint")
    cases.append((garbage, "not a readable torch checkpoint"))
    cases.append((_write(tmp_path / "wrapped", {"state_dict": state}), "not a state dict"))
    partial = {k: v for k, v in state.items() if "crossattention.self.key.weight" not in k}
    cases.append((_write(tmp_path / "partial", partial), r"missing \(2\).*crossattention"))
    extra = {**state, "blip.itm_head.weight": torch.zeros(2, 32)}
    cases.append((_write(tmp_path / "extra", extra), r"unexpected \(1\): blip\.itm_head"))
    wide = _write(tmp_path / "wide", config={**tiny_med_config(), "hidden_size": 64})
    cases.append((wide, r"shape \(\d+\).*expected"))
    no_vit = {k: v for k, v in state.items() if not k.startswith("blip.visual_encoder.cls")}
    cases.append((_write(tmp_path / "no_vit", no_vit), "not an ImageReward state dict"))
    bad = {**state, "blip.visual_encoder.pos_embed": torch.zeros(1, 145, 128)}  # 192 px
    cases.append((_write(tmp_path / "size", bad), "ViT for 192 px"))
    relu = _write(tmp_path / "relu", config={**tiny_med_config(), "hidden_act": "relu"})
    cases.append((relu, "hidden_act='relu'"))
    for path, pattern in cases:
        with pytest.raises(ValueError, match=pattern) as err:
            ImageReward.from_pretrained(path)
        assert str(path) in str(err.value) or str(path.parent) in str(err.value)
    bad_json = _write(tmp_path / "json")
    (bad_json.parent / "med_config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"not BLIP's med_config\.json"):
        ImageReward.from_pretrained(bad_json)
    small = _write(tmp_path / "vocab")
    write_vocab(small.parent, ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + [f"w{i}" for i in range(70)])
    with pytest.raises(ValueError, match="more than the 59 rows"):
        ImageReward.from_pretrained(small)


def test_keys_the_score_never_reads_are_optional(tmp_path, metric):
    state = {
        k: v
        for k, v in tiny_state_dict().items()
        if not k.startswith(("blip.vision_proj", "blip.text_proj")) and "position_ids" not in k
    }
    loaded = ImageReward.from_pretrained(_write(tmp_path / "lean", state))
    images, prompts = reference_images()[:3], REFERENCE_PROMPTS[:3]
    np.testing.assert_allclose(loaded.score(images, prompts), metric.score(images, prompts), atol=0)


def _fill(store, n: int) -> list[int]:
    from arena.storage.store import PromptRow

    models = [store.add_model("alpha", "import"), store.add_model("beta", "import")]
    store.add_prompts([PromptRow(REFERENCE_PROMPTS[k % 5], str(k)) for k in range(n)], "set")
    pids = store.prompt_ids("set")
    images = reference_images()
    ids = []
    for k in range(n):
        stored = store.images.put_image(images[k % len(images)].convert("RGB").rotate(90 * k))
        ids.append(store.add_image(models[k % 2], pids[("set", str(k))], stored, seed=k))
    return ids


def _stored(store) -> dict[int, tuple[str, float]]:
    from sqlalchemy import select

    from arena.storage import db

    with store.session() as s:
        rows = s.execute(
            select(db.Score.image_id, db.Score.version, db.Score.value).where(
                db.Score.metric == "imagereward"
            )
        ).all()
    assert len(rows) == len({r[0] for r in rows})  # no duplicates
    return {i: (v, val) for i, v, val in rows}


@pytest.mark.slow
def test_a_killed_scoring_job_resumes_without_duplicates_or_losses(store, root, metric):
    ids = _fill(store, n=8)
    kill_after_two_batches(store, {"imagereward": str(root)})
    assert len(_stored(store)) == 6  # two committed batches of three
    metrics = build_metrics(["imagereward"], weights={"imagereward": str(root)})
    summary = run(store, metrics, batch_size=3, progress=False)
    assert summary.images_selected == 2 and summary.rows_written["imagereward"] == 2
    rows = _stored(store)
    assert sorted(rows) == ids and {v for v, _ in rows.values()} == {"v1.0"}
    frame = store.images_frame().set_index("image_id")
    prompts = store.prompts_frame().set_index("prompt_id")["text"]
    for image_id in ids:
        image = store.images.open(frame.loc[image_id, "sha256"])
        prompt = prompts[frame.loc[image_id, "prompt_id"]]
        assert rows[image_id][1] == pytest.approx(metric.score([image], [prompt])[0], abs=1e-5)
    assert run(store, metrics, batch_size=3, progress=False).images_selected == 0


def _arena(store, n_prompts: int = 4) -> None:
    """Three models with one image per prompt, and human votes between them."""
    import uuid

    from arena.storage import db
    from arena.storage.store import PromptRow

    store.add_prompts(
        [PromptRow(REFERENCE_PROMPTS[k], str(k), category="c") for k in range(n_prompts)], "set"
    )
    pids = store.prompt_ids("set")
    images = reference_images()
    ids = {}
    for m, name in enumerate(("alpha", "beta", "gamma")):
        model = store.add_model(name, "import")
        for k in range(n_prompts):
            picture = images[(k + 3 * m) % len(images)].convert("RGB")
            stored = store.images.put_image(picture)
            ids[name, k] = store.add_image(
                model, pids[("set", str(k))], stored, seed=0
            )  # one cell per prompt
    with store.session() as s:
        rater = store.rater_id("person", kind="human", session=s)
        for k in range(n_prompts):
            for left, right, outcome in (("alpha", "beta", "left"), ("beta", "gamma", "right"),
                                         ("alpha", "gamma", "left")):  # fmt: skip
                battle = db.Battle(
                    token=uuid.uuid4().hex,
                    prompt_id=pids[("set", str(k))],
                    left_image_id=ids[left, k],
                    right_image_id=ids[right, k],
                    rater_id=rater,
                    policy="uniform",
                )
                s.add(battle)
                s.flush()
                s.add(db.Vote(battle_id=battle.id, rater_id=rater, outcome=outcome))


def test_scores_reach_the_leaderboard_and_the_agreement_tables(settings, root, capsys):
    """`arena score` stores ImageReward like any metric; the leaderboard shows its per-model
    mean and the agreement report scores it against the votes."""
    from arena.cli import main
    from arena.stats.agreement.report import agreement_report
    from arena.storage.store import Store

    store = Store(settings)
    _arena(store)
    store.close()
    ws = str(settings.workspace_path)
    argv = ["-w", ws, "score", "--metrics", "imagereward", "--weights", f"imagereward={root}"]
    assert main([*argv, "--no-progress"]) == 0
    assert "imagereward" in capsys.readouterr().out
    store = Store(settings)
    scores = store.scores_frame()
    assert set(scores.metric) == {"imagereward"} and len(scores) == 12
    assert scores.higher_is_better.all() and set(scores.version) == {"v1.0"}
    means = scores.merge(store.images_frame(), on="image_id").groupby("model")["value"].mean()

    assert main(["-w", ws, "leaderboard", "--bootstrap", "0", "--format", "json"]) == 0
    rows = {r["model"]: r for r in json.loads(capsys.readouterr().out)["leaderboard"]}
    for model, mean in means.items():
        assert rows[model]["imagereward"] == pytest.approx(mean)

    votes, images = store.votes_frame(), store.images_frame()
    report = agreement_report(votes, scores, np.random.default_rng(0), images=images, rounds=20)
    accuracy = report.accuracy[report.accuracy.metric == "imagereward"]
    assert len(accuracy) >= 1 and accuracy.n.max() == 12
    assert ((accuracy.accuracy >= 0) & (accuracy.accuracy <= 1)).all()
    assert "imagereward" in set(report.correlations.metric)
    store.close()


def test_arena_metrics_lists_the_three_files_found_or_missing(settings, root, tmp_path, capsys,
                                                              monkeypatch):  # fmt: skip
    from arena.cli import main

    ws = str(settings.workspace_path)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for folder, found in ((root, True), (tmp_path / "empty", False)):
        monkeypatch.setenv("ARENA_WEIGHTS_DIR", str(folder))
        assert main(["-w", ws, "metrics"]) == 0
        out = capsys.readouterr().out
        block = out[out.index("imagereward  (version v1.0") :].split("\n\n")[0]
        lines = [line for line in block.splitlines() if "weights:" in line]
        assert len(lines) >= 3
        for spec in ("THUDM/ImageReward / ImageReward.pt", "THUDM/ImageReward / med_config.json",
                     "bert-base-uncased / vocab.txt"):  # fmt: skip
            line = next(line for line in lines if spec in line)
            assert ("[found: " in line) == found and ("[MISSING]" in line) == (not found)
