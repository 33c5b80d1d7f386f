"""Feature extractors for the model-level metrics (cached by ``feature_cache``).

Three extractors, each loaded from local weights resolved by ``scoring/weights.py``:

* ``inception`` -- Inception-v3 2048-d pool features for KID and FID, through
  torch-fidelity's ``FeatureExtractorInceptionV3`` with its published
  ``pt_inception-2015-12-05`` weights (the TF FID network converted to PyTorch; the
  same class torchmetrics' FID wraps). Input: the decoded image as uint8 at its own
  size; the network resizes to 299x299 with its TF1-compatible bilinear resize, as the
  reference FID code does. The same pass also gives the head ``inception-logits``: the
  1008 logits without the fc bias that torch-fidelity's Inception Score reads, cached
  under a key of their own (``Extractor.head``).
* ``clip-l14-336`` -- OpenAI CLIP ViT-L/14@336 image embeddings (open_clip
  ``ViT-L-14-336``, QuickGELU), L2-normalised: CMMD and diversity. Preprocessing is
  open_clip's: shortest side to 336 (bicubic), centre crop, OpenAI mean/std -- the
  geometry of google-research/cmmd's loader (centre crop to square, bicubic resize).
* ``dinov2-l14`` -- DINOv2 ViT-L/14 (transformers ``Dinov2Model``) CLS token after the
  final layer norm (``pooler_output``, what the torch.hub model returns): FD-DINO and
  the Anomaly Score. Preprocessing follows dgm-eval (Stein et al. 2023): resize 224
  (bicubic), centre crop 224, ImageNet mean/std; the normalisation is the first step of
  ``forward_pixels`` so that the Anomaly Score can perturb images in [0, 1].

The cache (``features`` table, ``feature_cache.py``) holds one float32 vector per
(image, extractor key); the key is ``name@version#fingerprint``, where the fingerprint
hashes the weight file's size and first and last MiB, so features of different weights
never mix, followed by ``@cuda`` for features computed on a GPU (fp32 with TF32 off, but
other kernels than the CPU's), so CPU and GPU vectors are not mixed in one distance.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image as PILImage

from scoring import _compat  # noqa: F401  (before torchvision, open_clip, torch-fidelity)
from scoring.metrics.base import WeightFile
from scoring.weights import LOCAL_ONLY, MissingWeightsError, WeightSources, resolve

INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
    "weights-inception-2015-12-05-6726825d.pth"
)
INCEPTION = WeightFile("toshas/torch-fidelity", "weights-inception-2015-12-05-6726825d.pth")
CLIP_L14_336 = WeightFile("timm/vit_large_patch14_clip_336.openai", "open_clip_pytorch_model.bin")
DINOV2_LARGE = WeightFile("facebook/dinov2-large", "config.json", is_folder=True)
CLIP_ARCH = "ViT-L-14-336"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def fingerprint(path: Path | Sequence[Path]) -> str:
    """A short hash of a weight file (size, first and last MiB), a folder's files, or of
    several such paths in turn (a network whose weights come in two files)."""
    paths = [Path(path)] if isinstance(path, (str, Path)) else [Path(p) for p in path]
    files: list[Path] = []
    for one in paths:
        files += sorted(p for p in one.rglob("*") if p.is_file()) if one.is_dir() else [one]
    digest = hashlib.sha256()
    for f in files:
        size = f.stat().st_size
        digest.update(f"{f.name}:{size}".encode())
        with f.open("rb") as fh:
            digest.update(fh.read(1 << 20))
            if size > 2 << 20:
                fh.seek(-(1 << 20), 2)
                digest.update(fh.read(1 << 20))
    return digest.hexdigest()[:12]


class WeightsKey:
    """The key of a network's cached outputs: ``name@version#fingerprint[@device][+tag]``.

    The fingerprint hashes the weight files, so outputs of different weights never mix;
    ``@cuda`` keeps a GPU's outputs (other kernels) apart from the CPU's.
    """

    name: ClassVar[str]
    version: ClassVar[str]

    def _set_key(self, weights_path: Path | Sequence[Path], device: str) -> None:
        self.key = f"{self.name}@{self.version}#{fingerprint(weights_path)}"
        if str(device).split(":")[0] != "cpu":  # another machine's kernels: kept apart
            self.key += f"@{str(device).split(':')[0]}"
        self.tag = ""

    def tagged(self, tag: str):
        """Mark these weights in the key (``...#<fingerprint>+<tag>``) and return self.

        The offline demo tags its random-weight stand-ins ``demo-random``: the tag then
        travels with every cached feature and every model-level number computed from
        them, so they can be labelled wherever they are shown.
        """
        if not tag or not tag.replace("-", "").isalnum():
            raise ValueError(f"extractor tag {tag!r}: expected letters, digits and '-'.")
        self.tag = tag
        self.key = f"{self.key.split('+', 1)[0]}+{tag}"
        return self


class Extractor(WeightsKey):
    """A loaded feature network: picklable preprocessing plus a batched ``extract``.

    ``calls``, ``passes`` and ``images`` count real work done (batches, forward passes
    and images through the network); the cache tests and the benchmark read them.
    ``heads`` names further outputs of the same forward pass (name -> (version, dim)),
    each cached under a key of its own (:meth:`head`): one pass fills them all.
    """

    weight_file: ClassVar[WeightFile]
    description: ClassVar[str] = ""
    # Takes each image at its own size (a pass per shape): the cache sorts by size.
    own_size: ClassVar[bool] = False
    heads: ClassVar[dict[str, tuple[str, int]]] = {}

    def __init__(self, model: Any, weights_path: Path, device: str, dim: int):
        self.model = model
        self.device = device
        self.dim = dim
        self._set_key(weights_path, device)
        self.calls = 0
        self.passes = 0
        self.images = 0

    @property
    def source(self) -> Extractor:
        """The extractor whose forward pass computes these features (itself)."""
        return self

    def head(self, name: str) -> Head:
        """Another output of this network's forward pass, read through the cache on its own."""
        if name not in self.heads:
            raise ValueError(
                f"{self.name} has no output {name!r}; its outputs: "
                f"{', '.join([self.name, *self.heads])}."
            )
        version, dim = self.heads[name]
        return Head(self, name, version, dim)

    def output_keys(self) -> dict[str, str]:
        """Output name -> cache key, for every output of one forward pass."""
        keys = {self.name: self.key}
        keys.update({name: self.head(name).key for name in self.heads})
        return keys

    # The runner's ImageDataset groups preprocessing by this key.
    @property
    def preprocess_key(self) -> str:
        return f"features:{self.key}"

    def preprocessor(self) -> Callable[[PILImage.Image], Any]:
        raise NotImplementedError

    def _forward(self, batch: Any) -> Any:
        raise NotImplementedError

    def _forward_outputs(self, batch: Any) -> dict[str, Any]:
        """Output name -> (n, dim) tensor; extractors with ``heads`` return them all."""
        return {self.name: self._forward(batch)}

    def extract(self, batch: Any) -> np.ndarray:
        """(n, dim) float32 features of a preprocessed batch (a stacked tensor or a list)."""
        return self.extract_outputs(batch)[self.key]

    def extract_outputs(self, batch: Any) -> dict[str, np.ndarray]:
        """Cache key -> (n, dim) float32 array, for every output of the forward pass."""
        import torch

        self.calls += 1
        if not isinstance(batch, list):
            return self.extract_tensor(batch)
        # Mixed sizes (Inception takes images at their own size): one pass per shape.
        shapes: dict[tuple, list[int]] = {}
        for i, x in enumerate(batch):
            shapes.setdefault(tuple(x.shape), []).append(i)
        out: dict[str, np.ndarray] = {}
        for rows in shapes.values():
            for key, part in self.extract_tensor(torch.stack([batch[i] for i in rows])).items():
                if key not in out:
                    out[key] = np.empty((len(batch), part.shape[1]), dtype=np.float32)
                out[key][rows] = part
        return out

    def extract_tensor(self, batch) -> dict[str, np.ndarray]:
        import torch

        self.passes += 1
        self.images += len(batch)
        from scoring.devices import full_fp32

        keys = self.output_keys()
        with torch.inference_mode(), full_fp32():
            outputs = self._forward_outputs(batch.to(self.device))
        return {
            keys[name]: value.float().cpu().numpy().astype(np.float32, copy=False)
            for name, value in outputs.items()
        }

    def features_of(self, images: Sequence[PILImage.Image]) -> np.ndarray:
        """Features of PIL images, preprocessed in this process (no cache)."""
        from scoring.metrics.base import collate_inputs

        fn = self.preprocessor()
        return self.extract(collate_inputs([fn(img.convert("RGB")) for img in images]))


class Head:
    """Another output of an extractor's forward pass, cached under a key of its own.

    Read through the cache like an extractor (``cached_features``); computing missing
    vectors runs the owning extractor (``source``), and the cache stores every output
    of each pass, so the network runs once per image for all of them: Inception's
    logits (IS) and its pool features (KID, FID) come from one pass. The key follows
    the owner's (fingerprint, device, tag).
    """

    def __init__(self, source: Extractor, name: str, version: str, dim: int):
        self.source = source
        self.name = name
        self.version = version
        self.dim = dim

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}#{self.source.key.split('#', 1)[1]}"

    @property
    def own_size(self) -> bool:
        return self.source.own_size

    @property
    def preprocess_key(self) -> str:
        return self.source.preprocess_key

    def preprocessor(self):
        return self.source.preprocessor()

    def extract(self, batch: Any) -> np.ndarray:
        return self.source.extract_outputs(batch)[self.key]


# -- Inception-v3 (torch-fidelity) -----------------------------------------------------


def _to_uint8_tensor(img: PILImage.Image):
    import torch

    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def resolve_url_file(
    metric: str,
    spec: WeightFile,
    url: str,
    what: str,
    explicit: str | Path | None,
    sources: WeightSources | None = None,
    also: Sequence[Path] = (),
) -> Path:
    """A weight file published at ``url``, not on the Hugging Face hub: explicit path /
    weights folder / torch's hub cache (``checkpoints/<filename>``, where torch-fidelity
    and torchvision keep their downloads) / the paths in ``also`` / a download from
    ``url`` when ``sources.allow_network``; else the usual error, naming ``what`` it is.
    """
    import torch

    sources = sources or LOCAL_ONLY
    try:
        return resolve(metric, spec, explicit, sources)
    except MissingWeightsError as exc:
        if explicit is not None:
            raise
        cached = Path(torch.hub.get_dir()) / "checkpoints" / spec.filename
        for path in (cached, *also):
            if path.is_file():
                return path
        if sources.allow_network:
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(cached))
            return cached
        raise MissingWeightsError(
            f"{exc}\n  - it is {what}, not a hub file: download {url} and put it in "
            f"$ARENA_WEIGHTS_DIR or {cached.parent}"
        ) from None


def resolve_inception(explicit: str | Path | None, sources: WeightSources | None = None) -> Path:
    """The Inception weights, torch-fidelity's GitHub release asset (``resolve_url_file``)."""
    return resolve_url_file(
        "inception", INCEPTION, INCEPTION_URL, "torch-fidelity's release asset", explicit, sources
    )


class InceptionExtractor(Extractor):
    name: ClassVar[str] = "inception"
    version: ClassVar[str] = "tf-2015-12-05-pool3.1"
    weight_file: ClassVar[WeightFile] = INCEPTION
    description: ClassVar[str] = "Inception-v3 pool3 (2048-d), torch-fidelity, for KID/FID"
    own_size: ClassVar[bool] = True
    # torch-fidelity's IS input: the 1008 logits without the fc bias ('logits_unbiased').
    heads: ClassVar[dict[str, tuple[str, int]]] = {
        "inception-logits": ("tf-2015-12-05-logits-unbiased.1", 1008)
    }

    @classmethod
    def load(
        cls,
        weights: str | Path | None = None,
        device: str = "cpu",
        sources: WeightSources | None = None,
    ) -> InceptionExtractor:

        path = resolve_inception(weights, sources)
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        try:
            model = FeatureExtractorInceptionV3(
                "inception-v3-compat",
                ["2048", "logits_unbiased"],
                feature_extractor_weights_path=str(path),
            )
        except (RuntimeError, KeyError, EOFError, ValueError) as exc:
            raise ValueError(
                f"{path}: not torch-fidelity's Inception-v3 state dict "
                f"({str(exc).splitlines()[0][:200]}); expected {INCEPTION.filename} from "
                f"{INCEPTION_URL}."
            ) from None
        return cls(model.to(device).eval(), path, device, 2048)

    def preprocessor(self):
        return _to_uint8_tensor

    def _forward(self, batch):
        return self.model(batch)[0]

    def _forward_outputs(self, batch):
        pool, logits = self.model(batch)
        return {self.name: pool, "inception-logits": logits}


# -- CLIP ViT-L/14@336 (open_clip) ----------------------------------------------------


class ClipL336Extractor(Extractor):
    name: ClassVar[str] = "clip-l14-336"
    version: ClassVar[str] = "openai.1"
    weight_file: ClassVar[WeightFile] = CLIP_L14_336
    description: ClassVar[str] = "CLIP ViT-L/14@336 (OpenAI) image embedding, for CMMD/diversity"

    def __init__(self, model, preprocess, weights_path: Path, device: str, dim: int):
        super().__init__(model, weights_path, device, dim)
        self._preprocess = preprocess

    @classmethod
    def load(
        cls,
        weights: str | Path | None = None,
        device: str = "cpu",
        sources: WeightSources | None = None,
    ) -> ClipL336Extractor:
        import open_clip

        from scoring.metrics.openai_clip import read_local_config

        path = resolve("cmmd", CLIP_L14_336, weights, sources)
        overrides: dict[str, Any] = {}
        image_kwargs: dict[str, Any] = {}
        config = read_local_config(path)
        if config is not None:
            cfg = config["model_cfg"]
            overrides = {k: cfg[k] for k in ("embed_dim", "vision_cfg", "text_cfg") if k in cfg}
            pre = config.get("preprocess_cfg") or {}
            for key in ("mean", "std", "interpolation", "resize_mode"):
                if key in pre:
                    image_kwargs[f"image_{key}"] = pre[key]
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                CLIP_ARCH,
                pretrained=str(path),
                force_quick_gelu=True,
                **image_kwargs,
                **overrides,
            )
        except RuntimeError as exc:
            raise ValueError(
                f"{path}: does not load into open_clip {CLIP_ARCH} "
                f"({str(exc).splitlines()[0][:200]}); expected {CLIP_L14_336.filename} from "
                f"the hub repo {CLIP_L14_336.repo_id}."
            ) from None
        dim = int(model.visual.output_dim)
        return cls(model.to(device).eval(), preprocess, path, device, dim)

    def preprocessor(self):
        return self._preprocess

    def _forward(self, batch):
        from scoring.metrics.openai_clip import l2_normalise

        return l2_normalise(self.model.encode_image(batch).float())


# -- DINOv2 ViT-L/14 (transformers) ----------------------------------------------------


class DinoPreprocess:
    """Resize the shortest side to ``size`` (bicubic, antialiased), centre crop, to [0, 1]."""

    def __init__(self, size: int = 224):
        self.size = size

    def __call__(self, img: PILImage.Image):
        import torchvision.transforms.functional as TF
        from torchvision.transforms import InterpolationMode

        img = TF.resize(img.convert("RGB"), self.size, InterpolationMode.BICUBIC, antialias=True)
        return TF.to_tensor(TF.center_crop(img, [self.size, self.size]))


class DinoExtractor(Extractor):
    name: ClassVar[str] = "dinov2-l14"
    version: ClassVar[str] = "cls.1"
    weight_file: ClassVar[WeightFile] = DINOV2_LARGE
    description: ClassVar[str] = "DINOv2 ViT-L/14 CLS feature, for FD-DINO and the Anomaly Score"

    @classmethod
    def load(
        cls,
        weights: str | Path | None = None,
        device: str = "cpu",
        metric: str = "fd-dino",
        sources: WeightSources | None = None,
    ) -> DinoExtractor:
        from transformers import Dinov2Model

        from scoring.devices import fp32_weights

        path = resolve(metric, DINOV2_LARGE, weights, sources)
        try:
            model = Dinov2Model.from_pretrained(str(path), **fp32_weights())
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"{path}: not a transformers Dinov2Model folder ({str(exc).splitlines()[0][:200]})"
                f"; expected config.json and model.safetensors of {DINOV2_LARGE.repo_id}."
            ) from None
        # Frozen: the Anomaly Score's attack differentiates with respect to the input
        # only; trainable weights would make each of its backward passes keep the
        # activations their gradients need (38-47% more on small DINOv2s, measured).
        model.requires_grad_(False)
        return cls(model.to(device).eval(), path, device, int(model.config.hidden_size))

    def preprocessor(self):
        return DinoPreprocess(224)

    def forward_pixels(self, pixels):
        """Features of [0, 1] pixels (differentiable): ImageNet normalisation, then the CLS."""
        import torch

        mean = torch.tensor(IMAGENET_MEAN, device=pixels.device, dtype=pixels.dtype)
        std = torch.tensor(IMAGENET_STD, device=pixels.device, dtype=pixels.dtype)
        normed = (pixels - mean[:, None, None]) / std[:, None, None]
        return self.model(pixel_values=normed).pooler_output

    def _forward(self, batch):
        return self.forward_pixels(batch)


EXTRACTORS: dict[str, type[Extractor]] = {
    cls.name: cls for cls in (InceptionExtractor, ClipL336Extractor, DinoExtractor)
}
