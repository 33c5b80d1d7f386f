"""LPIPS (AlexNet, v0.1) and the DreamBooth DIV diversity: ``div-lpips`` of `arena distribution`.

DIV (Ruiz et al., DreamBooth, CVPR 2023) is the mean LPIPS distance between a model's
images of the same prompt (different seeds), all pairs within a prompt, averaged over
prompts: higher = more diverse. LPIPS is our own code of the ``lpips`` package's
``LPIPS(net='alex', version='0.1')`` (Zhang et al. 2018), checked against it on the same
weights (tests/test_lpips_div.py):

* input: the decoded RGB image at its own size (``lpips.load_image`` + ``im2tensor``:
  ``x / 127.5 - 1``), then the ScalingLayer ``(x - shift) / scale``;
* torchvision's AlexNet ``features`` cut after each ReLU (relu1 ... relu5);
* per layer: unit-normalise the channels at each position (``x / (‖x‖ + 1e-10)``),
  square the difference, weight the channels by the lin layer (1x1 conv, no bias),
  average over space; LPIPS is the sum over the five layers.

Weights: torchvision's ImageNet AlexNet (``alexnet-owt-7be5be79.pth``; only its
``features.*`` tensors are read) and the lpips package's v0.1 linear layers
(``alex.pth``), both resolved like Inception's (explicit path / weights folder / torch's
hub cache / the installed ``lpips`` package's copy of ``alex.pth`` / download when
allowed).

Each image goes through AlexNet once; the pairs of a prompt are compared from those
feature maps (the ``lpips`` package runs both images of every pair). The maps are
spatial (~43 MB per 1024² image), so they are not cached: DIV is recomputed on each run
(one AlexNet pass per image). Under a launcher the prompt groups are dealt over the
ranks and rank 0 gathers the per-prompt means.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from scoring import _compat  # noqa: F401  (before torchvision)
from scoring.devices import full_fp32
from scoring.distribution.features import WeightsKey, resolve_url_file
from scoring.metrics.base import WeightFile
from scoring.sharding import Ranks, bar_label
from scoring.weights import WeightSources

ALEXNET = WeightFile("pytorch/vision", "alexnet-owt-7be5be79.pth")
ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
LPIPS_LIN = WeightFile("richzhang/PerceptualSimilarity", "alex.pth", "lpips/weights/v0.1")
LPIPS_LIN_URL = (
    "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth"
)
# lpips.pretrained_networks.alexnet: torchvision's features cut after each ReLU.
SLICES = ((0, 2), (2, 5), (5, 8), (8, 10), (10, 12))
CHANNELS = (64, 192, 384, 256, 256)
# lpips.ScalingLayer (v0.1): ImageNet statistics in [-1, 1] units.
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
NORM_EPS = 1e-10
# The smallest side AlexNet's two 3x3/2 max-pools leave a non-empty map for.
MIN_SIDE = 31
# Partners compared with one image at a time (bounds the difference maps in memory).
PAIR_CHUNK = 16
# --weights names: the AlexNet file, the lin-layer file, or a folder holding both.
WEIGHT_NAMES = ("div-lpips", "alexnet", "lpips")


def _lpips_package_copy() -> list[Path]:
    """The lpips package's own ``weights/v0.1/alex.pth``, when it is installed (not imported)."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(next(iter(spec.submodule_search_locations))) / "weights" / "v0.1" / "alex.pth"]


def resolve_weights(
    weights: Mapping[str, str], sources: WeightSources | None = None
) -> tuple[Path, Path]:
    """(AlexNet file, lin-layer file) from ``--weights alexnet=FILE lpips=FILE`` or
    ``div-lpips=FOLDER`` (holding both), else the weights folder and the caches."""
    folder = weights.get("div-lpips")
    if folder is not None and Path(folder).expanduser().is_file():
        raise ValueError(
            f"--weights div-lpips={folder}: expected a folder holding {ALEXNET.filename} and "
            f"{LPIPS_LIN.filename}; give single files as alexnet=FILE and lpips=FILE."
        )
    alex = resolve_url_file(
        "div-lpips",
        ALEXNET,
        ALEXNET_URL,
        "torchvision's ImageNet AlexNet",
        weights.get("alexnet", folder),
        sources,
    )
    lin = resolve_url_file(
        "div-lpips",
        LPIPS_LIN,
        LPIPS_LIN_URL,
        "the lpips package's v0.1 linear layers (pip install lpips ships it)",
        weights.get("lpips", folder),
        sources,
        also=_lpips_package_copy(),
    )
    return alex, lin


def _load_state(path: Path) -> dict[str, Any]:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # a legacy (non-zip) file cannot be memory-mapped
        return torch.load(path, map_location="cpu", weights_only=True)


class LpipsAlex(WeightsKey):
    """LPIPS v0.1 with the AlexNet trunk: ``layers`` of images, ``pairwise`` distances."""

    name: ClassVar[str] = "lpips-alex"
    version: ClassVar[str] = "v0.1"

    def __init__(self, slices, lins, paths: Sequence[Path], device: str):
        import torch

        self.slices = slices
        self.lins = lins
        self.device = device
        self.shift = torch.tensor(SHIFT, dtype=torch.float32, device=device)[None, :, None, None]
        self.scale = torch.tensor(SCALE, dtype=torch.float32, device=device)[None, :, None, None]
        self._set_key(paths, device)
        self.passes = 0
        self.images = 0

    @classmethod
    def load(
        cls,
        weights: Mapping[str, str] | None = None,
        device: str = "cpu",
        sources: WeightSources | None = None,
    ) -> LpipsAlex:
        alex, lin = resolve_weights(dict(weights or {}), sources)
        return cls.from_files(alex, lin, device)

    @classmethod
    def from_files(cls, alexnet_path: Path, lin_path: Path, device: str = "cpu") -> LpipsAlex:
        import torch
        from torchvision.models import alexnet

        state = _load_state(alexnet_path)
        trunk = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
        with torch.device("meta"):  # the classifier (58M weights) is never built
            features = alexnet().features
        features = features.to_empty(device="cpu")
        try:
            features.load_state_dict(trunk, strict=True)
        except RuntimeError as exc:
            raise ValueError(
                f"{alexnet_path}: not torchvision's AlexNet state dict "
                f"({str(exc).splitlines()[-1].strip()[:200]}); expected {ALEXNET.filename} "
                f"from {ALEXNET_URL}."
            ) from None
        slices = [features[a:b].to(device).eval().requires_grad_(False) for a, b in SLICES]
        lin_state = _load_state(lin_path)
        lins = []
        for k, channels in enumerate(CHANNELS):
            w = lin_state.get(f"lin{k}.model.1.weight")
            if w is None or tuple(w.shape) != (1, channels, 1, 1):
                raise ValueError(
                    f"{lin_path}: not the lpips v0.1 AlexNet linear layers (lin{k}.model.1."
                    f"weight should be 1x{channels}x1x1, got "
                    f"{None if w is None else tuple(w.shape)}); expected {LPIPS_LIN.filename} "
                    f"from {LPIPS_LIN_URL}."
                )
            lins.append(w.detach().to(device=device, dtype=torch.float32).clone())
        return cls(slices, lins, [alexnet_path, lin_path], device)

    def layers(self, pixels) -> list:
        """The five unit-normalised feature maps of uint8 (n, 3, H, W) images."""
        import torch

        self.passes += 1
        self.images += len(pixels)
        # lpips.im2tensor: image / (255 / 2) - 1 in float64, then float32.
        x = (pixels.to(self.device).double() / 127.5 - 1.0).float()
        x = (x - self.shift) / self.scale
        out = []
        with torch.inference_mode(), full_fp32():
            for block in self.slices:
                x = block(x)
                norm = torch.sqrt(torch.sum(x**2, dim=1, keepdim=True))
                out.append(x / (norm + NORM_EPS))
        return out

    def pairwise(self, layers: Sequence) -> np.ndarray:
        """(k, k) LPIPS distances between the images of ``layers`` (upper triangle set)."""
        import torch
        import torch.nn.functional as F

        k = len(layers[0])
        dist = np.zeros((k, k), dtype=np.float64)
        with torch.inference_mode(), full_fp32():
            for i in range(k - 1):
                for start in range(i + 1, k, PAIR_CHUNK):
                    stop = min(k, start + PAIR_CHUNK)
                    total = 0
                    for feats, lin in zip(layers, self.lins, strict=True):
                        diff = (feats[i : i + 1] - feats[start:stop]) ** 2
                        total = total + F.conv2d(diff, lin).mean(dim=(2, 3), keepdim=True)
                    dist[i, start:stop] = total.flatten().double().cpu().numpy()
        return dist

    def distance(self, a, b) -> np.ndarray:
        """LPIPS between uint8 (n, 3, H, W) images ``a[i]`` and ``b[i]``, pair by pair."""
        import torch

        la, lb = self.layers(a), self.layers(b)
        out = []
        for i in range(len(a)):
            pair = [torch.cat([x[i : i + 1], y[i : i + 1]]) for x, y in zip(la, lb, strict=True)]
            out.append(self.pairwise(pair)[0, 1])
        return np.array(out)


def mean_pairwise(net: LpipsAlex, pixels: Sequence, batch_size: int) -> float:
    """Mean LPIPS over the pairs i < j of same-size uint8 (3, H, W) images (≥ 2)."""
    import torch

    chunks = [
        net.layers(torch.stack(list(pixels[s : s + batch_size])))
        for s in range(0, len(pixels), batch_size)
    ]
    layers = [torch.cat([c[level] for c in chunks]) for level in range(len(SLICES))]
    dist = net.pairwise(layers)
    return float(dist[np.triu_indices(len(pixels), k=1)].mean())


# -- the job: prompt groups, dealt over the ranks ------------------------------------------


def prompt_groups(rows) -> list[tuple[str, Any, list[int], tuple[int, int]]]:
    """(model, prompt id, image ids, (height, width) compared at) per prompt of a model with
    two or more images, in (model, prompt) order; ``rows`` in pixel-hash order.

    A prompt whose images differ in size is compared at its smallest size (by area):
    LPIPS compares two maps of one shape, and the lpips package takes both images as they
    are, so it has no rule of its own for this.
    """
    keep = rows[rows.prompt_id.notna()]
    groups = []
    for (model, prompt), part in keep.groupby(["model", "prompt_id"], sort=True):
        if len(part) < 2:
            continue
        sizes = {(int(h), int(w)) for h, w in zip(part.height, part.width, strict=True)}
        h, w = min(sizes, key=lambda hw: (hw[0] * hw[1], hw))
        if min(h, w) < MIN_SIDE:
            raise ValueError(
                f"div-lpips: model {model!r} has {h}x{w} images (prompt {prompt}); LPIPS's "
                f"AlexNet needs at least {MIN_SIDE}x{MIN_SIDE} pixels. Leave div-lpips out "
                "for such small images."
            )
        groups.append((str(model), prompt, [int(i) for i in part.image_id], (h, w)))
    return groups


class _GroupImages:
    """Decodes the images of the groups in order (a DataLoader dataset: worker processes)."""

    def __init__(self, items: list[tuple[str, tuple[int, int]]]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        import torch
        from PIL import Image as PILImage

        path, (h, w) = self.items[index]
        with PILImage.open(path) as img:
            rgb = img.convert("RGB")
        if rgb.size != (w, h):
            rgb = rgb.resize((w, h), PILImage.BICUBIC)
        arr = np.asarray(rgb, dtype=np.uint8)
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def group_means(
    store,
    net: LpipsAlex,
    rows,
    batch_size: int = 32,
    num_workers: int = 0,
    progress: bool = False,
    ranks: Ranks | None = None,
) -> dict[tuple[str, Any], float]:
    """(model, prompt id) -> mean LPIPS over the pairs of that prompt's images.

    Every rank computes the groups dealt to it (group k to rank k mod N); rank 0 gets
    all of them, the other ranks an empty dict.
    """
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    ranks = ranks or Ranks()
    mine = ranks.deal(prompt_groups(rows))
    sha = dict(zip(rows.image_id, rows.sha256, strict=True))
    items = [(str(store.images.path_for(sha[i])), size) for _m, _p, ids, size in mine for i in ids]
    loader = DataLoader(_GroupImages(items), batch_size=None, num_workers=num_workers)
    images = iter(loader)
    out: dict[tuple[str, Any], float] = {}
    bar = tqdm(
        total=len(items),
        unit="img",
        desc=bar_label(ranks, "div-lpips"),
        disable=not progress,
        position=ranks.local_rank,
    )
    try:
        for model, prompt, ids, _size in mine:
            pixels = [next(images) for _ in ids]
            out[(model, prompt)] = mean_pairwise(net, pixels, batch_size)
            bar.update(len(ids))
    finally:
        bar.close()
    gathered = ranks.gather(out)
    if gathered is None:
        return {}
    return {key: value for part in gathered for key, value in part.items()}
