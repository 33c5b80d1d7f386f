"""LPIPS (AlexNet, v0.1) and the DreamBooth DIV diversity (``div-lpips``).

The reference is the ``lpips`` package itself: ``LPIPS(pretrained=True, net='alex',
pnet_rand=True)`` builds a seeded random AlexNet trunk and loads the package's real v0.1
lin layers; that very state is saved in the files our loader reads (torchvision's
``features.*`` keys, the package's ``lin{k}.model.1.weight``) and loaded through the real
resolution and loading code. Distances agree within 1e-5.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from scoring import _compat  # noqa: F401  (torchvision shim, before lpips)
from scoring.distribution import lpips_div
from scoring.distribution.lpips_div import ALEXNET, LPIPS_LIN, LpipsAlex
from scoring.sharding import Ranks
from scoring.weights import MissingWeightsError, WeightSources

lpips = pytest.importorskip("lpips")

# lpips.pretrained_networks.alexnet: slice k holds torchvision's features[a:b].
SLICE_OF = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}


def save_reference_state(reference, root):
    """The lpips model's weights as the two files of the weights folder layout."""
    state = reference.state_dict()
    trunk = {
        f"features.{i}.{p}": state[f"net.slice{s}.{i}.{p}"]
        for i, s in SLICE_OF.items()
        for p in ("weight", "bias")
    }
    alex = root / ALEXNET.repo_id / ALEXNET.filename
    alex.parent.mkdir(parents=True, exist_ok=True)
    torch.save(trunk, alex)
    lin = root / LPIPS_LIN.repo_id / LPIPS_LIN.subfolder / LPIPS_LIN.filename
    lin.parent.mkdir(parents=True, exist_ok=True)
    torch.save({f"lin{k}.model.1.weight": state[f"lin{k}.model.1.weight"] for k in range(5)}, lin)
    return root


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    return lpips.LPIPS(pretrained=True, net="alex", pnet_rand=True, verbose=False)


@pytest.fixture(scope="module")
def weights_root(reference, tmp_path_factory):
    return save_reference_state(reference, tmp_path_factory.mktemp("lpips-weights"))


@pytest.fixture(scope="module")
def net(weights_root):
    return LpipsAlex.load(sources=WeightSources(weights_root))


def _package_distance(reference, a, b):
    """lpips' own forward on ``im2tensor`` inputs (uint8 / 127.5 - 1)."""

    def prep(x):
        return (x.double() / 127.5 - 1.0).float()

    with torch.no_grad():
        return reference(prep(a), prep(b)).flatten().double().numpy()


def _pixels(rng, n, h, w):
    return torch.from_numpy(rng.integers(0, 256, (n, 3, h, w), dtype=np.uint8))


def test_lpips_matches_the_lpips_package_on_non_square_images(net, reference):
    rng = np.random.default_rng(0)
    a, b = _pixels(rng, 3, 45, 70), _pixels(rng, 3, 45, 70)
    ours = net.distance(a, b)
    theirs = _package_distance(reference, a, b)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)
    assert (ours > 0).all() and net.distance(a[:1], a[:1])[0] == 0.0
    # The package's real lin weights were loaded, not zeros: distances differ by layer.
    assert len({float(w.sum()) for w in net.lins}) == 5


def test_mean_pairwise_is_the_mean_over_all_pairs_of_the_package(net, reference):
    rng = np.random.default_rng(1)
    pixels = list(_pixels(rng, 5, 40, 33))
    pairs = [(i, j) for i in range(5) for j in range(i + 1, 5)]
    expected = np.mean(
        [_package_distance(reference, pixels[i][None], pixels[j][None])[0] for i, j in pairs]
    )
    before = net.images
    got = lpips_div.mean_pairwise(net, pixels, batch_size=2)
    assert got == pytest.approx(expected, abs=1e-5)
    assert net.images - before == 5  # one AlexNet pass per image, not per pair


def test_the_full_torchvision_file_loads_and_wrong_files_are_named(weights_root, tmp_path):
    from torchvision.models import alexnet

    lin = weights_root / LPIPS_LIN.repo_id / LPIPS_LIN.subfolder / LPIPS_LIN.filename
    torch.manual_seed(1)
    full = tmp_path / ALEXNET.filename
    torch.save(alexnet().state_dict(), full)  # features + classifier, as torchvision ships
    net = LpipsAlex.from_files(full, lin)
    x = _pixels(np.random.default_rng(2), 2, 32, 32)
    assert np.isfinite(net.distance(x[:1], x[1:])).all()
    other = LpipsAlex.from_files(weights_root / ALEXNET.repo_id / ALEXNET.filename, lin)
    assert other.key != net.key and other.key.startswith("lpips-alex@v0.1#")
    with pytest.raises(ValueError, match="not torchvision's AlexNet state dict"):
        LpipsAlex.from_files(lin, lin)
    with pytest.raises(ValueError, match=r"lin0.model.1.weight should be 1x64x1x1"):
        LpipsAlex.from_files(full, full)
    with pytest.raises(ValueError, match="expected a folder holding"):
        LpipsAlex.load({"div-lpips": str(full)})


def test_missing_weights_name_both_files_and_where_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    empty = WeightSources(tmp_path / "weights")
    with pytest.raises(MissingWeightsError) as err:
        lpips_div.resolve_weights({}, empty)
    assert ALEXNET.filename in str(err.value) and lpips_div.ALEXNET_URL in str(err.value)
    alex = tmp_path / "hub" / "checkpoints" / ALEXNET.filename  # torchvision's own cache
    alex.parent.mkdir(parents=True)
    alex.write_bytes(b"x")
    monkeypatch.setattr(lpips_div, "_lpips_package_copy", lambda: [])
    with pytest.raises(MissingWeightsError) as err:
        lpips_div.resolve_weights({}, empty)
    assert "alex.pth" in str(err.value) and "pip install lpips" in str(err.value)
    monkeypatch.undo()
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    found = lpips_div.resolve_weights({}, empty)  # the installed package's copy
    assert found[0] == alex and found[1].parts[-3:] == ("weights", "v0.1", "alex.pth")


# -- the job -----------------------------------------------------------------------------


def _workspace(store, order=1):
    """Two models x 3 prompts x 3 seeds (48x40), a prompt with one image, one with mixed
    sizes; ``order=-1`` inserts everything in reverse (other ids, same images)."""
    from arena.storage.store import PromptRow

    rng = np.random.default_rng(5)
    plan = []
    for model, tint in (("calm", 40), ("wild", 0)):
        for prompt in ("p1", "p2", "p3", "p4"):
            seeds = 1 if prompt == "p4" else 3
            for seed in range(seeds):
                h, w = (56, 40) if (prompt == "p3" and seed == 2) else (48, 40)
                spread = 255 if model == "wild" else 60
                arr = rng.integers(0, spread, (h, w, 3)) + tint
                plan.append((model, prompt, seed, Image.fromarray(arr.astype(np.uint8))))
    prompts = [PromptRow(f"prompt {p}", p) for p in ("p1", "p2", "p3", "p4")][::order]
    store.add_prompts(prompts, "set")
    pids = store.prompt_ids("set")
    mids = {}
    for model, prompt, seed, image in plan[::order]:
        if model not in mids:
            mids[model] = store.add_model(model, "import")
        store.add_image(
            mids[model], pids[("set", prompt)], store.images.put_image(image), seed=seed
        )
    real = store.add_model("real", "reference")
    store.add_image(real, None, store.images.put_image(Image.new("RGB", (40, 48), "red")))
    return plan


def test_div_lpips_through_the_job_is_the_package_mean_over_prompts(store, net, reference):
    from scoring.distribution.run import run

    plan = _workspace(store)
    lpips_only = {LpipsAlex.name: net}
    found = run(store, ["div-lpips"], "real", progress=False, extractors=lpips_only, batch_size=2)
    results = {r.model: r for r in found}
    for model in ("calm", "wild"):
        per_prompt = []
        for prompt in ("p1", "p2", "p3"):
            images = [img for m, p, _s, img in plan if m == model and p == prompt]
            h, w = 48, 40  # p3's 56x40 image is compared at the prompt's smallest size
            px = [
                torch.from_numpy(np.array(i.resize((w, h), Image.BICUBIC))).permute(2, 0, 1)
                for i in images
            ]
            pairs = [(i, j) for i in range(3) for j in range(i + 1, 3)]
            distances = [_package_distance(reference, px[i][None], px[j][None]) for i, j in pairs]
            per_prompt.append(np.mean(distances))
        got = results[model]
        assert got.value == pytest.approx(np.mean(per_prompt), abs=1e-5)
        assert got.std == pytest.approx(np.std(per_prompt), abs=1e-5)
        assert got.n == 3 and got.reference == ""  # p4 has one image: no pair
        assert "div-lpips over only 3 prompt(s)" in got.warning
        assert got.details["features"] == net.key and got.details["images"] == 10
    assert results["wild"].value > results["calm"].value  # noisier images differ more
    frame = store.model_metrics_frame()
    assert set(frame.metric) == {"div-lpips"} and frame.higher_is_better.all()


def test_prompt_groups_dealt_over_two_ranks_give_the_one_process_numbers(store, net):
    _workspace(store)
    from scoring.distribution.run import _frames

    _ref, pool, _pairing = _frames(store, "real", None)
    single = lpips_div.group_means(store, net, pool, batch_size=4)
    shares = [
        lpips_div.group_means(store, net, pool, batch_size=4, ranks=Ranks(rank, 2))
        for rank in (0, 1)
    ]
    assert len(single) == 6 and shares[0].keys().isdisjoint(shares[1].keys())
    assert {**shares[0], **shares[1]} == single  # bit for bit


def test_small_images_are_a_clear_error(store, net):
    from scoring.distribution.run import run

    mid = store.add_model("tiny", "import")
    from arena.storage.store import PromptRow

    store.add_prompts([PromptRow("x", "x")], "s")
    pid = store.prompt_ids("s")[("s", "x")]
    rng = np.random.default_rng(0)
    for seed in (0, 1):
        image = Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
        store.add_image(mid, pid, store.images.put_image(image), seed=seed)
    real = store.images.put_image(Image.new("RGB", (16, 16), "red"))
    store.add_image(store.add_model("real", "reference"), None, real)
    with pytest.raises(ValueError, match="needs at least 31x31 pixels"):
        run(store, ["div-lpips"], "real", progress=False, extractors={LpipsAlex.name: net})


def test_the_mean_over_prompts_does_not_depend_on_their_order():
    """Prompt ids follow insertion order; (0.1 + 0.2) + 0.3 != (0.3 + 0.2) + 0.1 in floats."""
    from scoring.distribution.stats import prompt_average

    forward = prompt_average([0.1, 0.2, 0.3], 6, "div-lpips")
    backward = prompt_average([0.3, 0.2, 0.1], 6, "div-lpips")
    assert (forward.value, forward.std) == (backward.value, backward.std)
    assert forward.n == 3 and "div-lpips over only 3 prompt(s)" in forward.warning
