"""Tag accuracy: how many of the prompt's booru tags a WD14 tagger finds in the image.

What is computed, exactly:

* Tagger: ``SmilingWolf/wd-v1-4-moat-tagger-v2`` (``model.onnx`` + ``selected_tags.csv``,
  columns ``tag_id,name,category,count``; category 0 general, 4 character, 9 rating)
  run through onnxruntime. Its output is one probability per CSV row (the graph
  ends in a sigmoid). ``cuda:N`` runs on CUDA device N or fails with the fix (a CPU
  onnxruntime build, or CUDA libraries that did not load); never silently on the CPU.
* Image preprocessing (facts from the SmilingWolf tagger space): alpha composited
  on an opaque white canvas, padded centred to a square with white (left/top get
  ``pad // 2``), resized with PIL bicubic to the model's input size (read from the
  graph: 448 for the real model) when it differs, channels reversed to BGR,
  float32 in 0–255, NHWC.
* Prompt tags (``parse_prompt_tags``): split on commas, newlines and ``BREAK``;
  A1111 extra-network tokens (``<lora:name:0.8>``, ``<hypernet:…>``) dropped;
  unescaped ``( ) [ ] { }`` removed (attention syntax) while ``\\(`` ``\\)`` stay as
  literal parentheses; a trailing ``:weight`` removed where the tag carried
  brackets (``(long hair:1.2)``); lowercased; runs of whitespace → ``_``;
  duplicates keep their first position. Kaomoji (``^_^``, ``:d``, ``:3``) pass
  through unchanged.
* The tags that count are those in the tagger's *general* vocabulary (category 0),
  minus prompt-quality words (``masterpiece``, ``best_quality``, ``score_9`` …), which
  describe no visible content even where a vocabulary lists them.
* Per image: found / prompted, where a prompted tag is found when its probability
  is ``>= 0.35``. An image whose prompt has no countable tag is skipped (NaN) and
  counted in ``TagAccuracy.skipped``. Per-tag hits (tag, position in the prompt,
  probability, hit) are returned as details so that tag position and tag count
  effects can be analysed. Per-model figures are the macro average over scored
  images (``per_model_tag_accuracy``).
"""

from __future__ import annotations

import csv
import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image as PILImage

from scoring.metrics.base import LoadRequest, Metric, WeightFile, register_metric
from scoring.weights import WeightSources, resolve

TAGGER_REPO = "SmilingWolf/wd-v1-4-moat-tagger-v2"
THRESHOLD = 0.35
GENERAL, CHARACTER, RATING = 0, 4, 9

# Words prompts use to ask for quality; not content a tagger can see.
QUALITY_WORDS = frozenset(
    {
        "masterpiece",
        "best_quality",
        "high_quality",
        "good_quality",
        "normal_quality",
        "medium_quality",
        "average_quality",
        "low_quality",
        "bad_quality",
        "worst_quality",
        "amazing_quality",
        "great_quality",
        "very_aesthetic",
        "ultra_detailed",
        "extremely_detailed",
        "highres",
        "absurdres",
        "lowres",
    }
)
_SCORE_WORD = re.compile(r"^score_\d+(_up)?$")  # Pony-style quality tags

# A1111 extra networks: <lora:name:0.8>, <lyco:…>, <hypernet:…>; not kaomoji like <o>_<o>.
_EXTRA_NETWORK = re.compile(r"<[A-Za-z_][\w-]*:[^<>]*>")
_SEPARATORS = re.compile(r"[,\n]|\bBREAK\b")
_WEIGHT = re.compile(r"^(.+?)\s*:\s*[-+]?(?:\d+(?:\.\d*)?|\.\d+)$")
_BRACKETS = frozenset("()[]{}")


# -- prompt tags -------------------------------------------------------------------------


def _strip_attention(piece: str) -> tuple[str, bool]:
    """Drop unescaped brackets and unescape ``\\x``; also say whether brackets were seen."""
    out: list[str] = []
    bracketed = False
    i = 0
    while i < len(piece):
        char = piece[i]
        if char == "\\" and i + 1 < len(piece):
            out.append(piece[i + 1])
            i += 2
            continue
        if char in _BRACKETS:
            bracketed = True
        else:
            out.append(char)
        i += 1
    return "".join(out), bracketed


def normalise_tag(text: str) -> str:
    """Lowercase, trim, and turn runs of whitespace into one underscore (booru form)."""
    return re.sub(r"\s+", "_", text.strip()).lower()


def parse_prompt_tags(prompt: str) -> list[str]:
    """The prompt's tags in booru form, in prompt order, duplicates removed (first kept)."""
    text = _EXTRA_NETWORK.sub(",", prompt or "")
    tags: dict[str, None] = {}
    for piece in _SEPARATORS.split(text):
        stripped, bracketed = _strip_attention(piece)
        if bracketed:
            weighted = _WEIGHT.match(stripped.strip())
            if weighted:
                stripped = weighted.group(1)
        tag = normalise_tag(stripped)
        if tag:
            tags.setdefault(tag, None)
    return list(tags)


def is_quality_word(tag: str) -> bool:
    return tag in QUALITY_WORDS or bool(_SCORE_WORD.match(tag))


# -- the tag table -----------------------------------------------------------------------


@dataclass(frozen=True)
class TagTable:
    """``selected_tags.csv``: one row per model output, in output order."""

    names: tuple[str, ...]
    categories: tuple[int, ...]
    general: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        general: dict[str, int] = {}
        for index, (name, category) in enumerate(zip(self.names, self.categories, strict=True)):
            if category == GENERAL:
                general.setdefault(name, index)
        object.__setattr__(self, "general", general)

    def __len__(self) -> int:
        return len(self.names)

    def countable(self, prompt: str) -> tuple[list[tuple[str, int, int]], int]:
        """([(tag, position in prompt, output index)], number of parsed tags) for one prompt.

        Only general-vocabulary tags that are not quality words count.
        """
        parsed = parse_prompt_tags(prompt)
        known = [
            (tag, position, self.general[tag])
            for position, tag in enumerate(parsed)
            if tag in self.general and not is_quality_word(tag)
        ]
        return known, len(parsed)


def load_tag_table(path: str | Path) -> TagTable:
    """Read a WD14 ``selected_tags.csv``; a clear error names the file and what is wrong."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"name", "category"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(
                f"metric 'tags': {path} is not a WD14 selected_tags.csv: it lacks the column(s) "
                f"{sorted(missing)} (expected tag_id,name,category,count)."
            )
        names, categories = [], []
        for line, row in enumerate(reader, start=2):
            try:
                categories.append(int(row["category"]))
            except (TypeError, ValueError):
                raise ValueError(
                    f"metric 'tags': {path} line {line}: category {row['category']!r} is not "
                    "an integer."
                ) from None
            names.append(row["name"])
    if not names:
        raise ValueError(f"metric 'tags': {path} has no tags.")
    return TagTable(tuple(names), tuple(categories))


# -- the math ----------------------------------------------------------------------------


def tag_hits(
    probabilities: np.ndarray, indices: Sequence[int], threshold: float = THRESHOLD
) -> np.ndarray:
    """Boolean hit per prompted tag: its output probability is ``>= threshold``."""
    probs = np.asarray(probabilities, dtype=np.float64)
    return probs[np.asarray(indices, dtype=np.int64)] >= threshold


def tag_accuracy(hits: np.ndarray) -> float:
    """Found / prompted; NaN when nothing was prompted (the image is skipped)."""
    hits = np.asarray(hits, dtype=bool)
    return float(hits.mean()) if hits.size else float("nan")


def per_model_tag_accuracy(scores: Sequence[float], models: Sequence[Any]) -> Any:
    """Macro average per model: mean of per-image accuracies over scored images.

    Returns a pandas DataFrame (model, tag_accuracy, n_images, n_scored, n_skipped);
    skipped images (NaN) are left out of the mean and counted.
    """
    import pandas as pd

    frame = pd.DataFrame({"model": list(models), "value": np.asarray(scores, dtype=np.float64)})
    if len(frame) != len(scores):
        raise ValueError("per_model_tag_accuracy needs one model per score")
    grouped = frame.groupby("model", sort=True)["value"]
    out = pd.DataFrame(
        {
            "tag_accuracy": grouped.mean(),  # pandas skips NaN
            "n_images": grouped.size(),
            "n_scored": grouped.count(),
        }
    )
    out["n_skipped"] = out["n_images"] - out["n_scored"]
    return out.reset_index()


def tag_hits_frame(details: Sequence[dict | None], image_ids: Sequence[Any]) -> Any:
    """Long table of per-tag hits (image, tag, position, n_countable, probability, hit).

    For tag position and tag count analyses; ``details`` as returned by
    ``TagAccuracy.score_with_details`` (or read back from ``scores.details``).
    """
    import pandas as pd

    rows = [
        {
            "image": image,
            "tag": hit["tag"],
            "position": hit["position"],
            "n_countable": len(detail["tags"]),
            "probability": hit["probability"],
            "hit": hit["hit"],
        }
        for image, detail in zip(image_ids, details, strict=True)
        if detail
        for hit in detail["tags"]
    ]
    columns = ["image", "tag", "position", "n_countable", "probability", "hit"]
    return pd.DataFrame(rows, columns=columns)


# -- image preprocessing -----------------------------------------------------------------


def prepare_tagger_image(image: PILImage.Image, size: int) -> np.ndarray:
    """One image -> (size, size, 3) float32 BGR in 0..255, white-composited and white-padded."""
    rgba = image.convert("RGBA")
    canvas = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
    canvas.alpha_composite(rgba)
    rgb = canvas.convert("RGB")
    width, height = rgb.size
    side = max(width, height)
    square = PILImage.new("RGB", (side, side), (255, 255, 255))
    square.paste(rgb, ((side - width) // 2, (side - height) // 2))
    if side != size:
        square = square.resize((size, size), PILImage.BICUBIC)
    return np.ascontiguousarray(np.asarray(square, dtype=np.float32)[:, :, ::-1])


# -- the metric --------------------------------------------------------------------------


CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


def gpu_fix(metric: str) -> str:
    """What to do when ``metric``'s onnxruntime cannot run on CUDA."""
    return (
        "on a GPU machine replace the CPU build with the GPU one, built for your CUDA major "
        "version: `pip uninstall -y onnxruntime && pip install onnxruntime-gpu` (docs/metrics.md, "
        f'"The tagger on a GPU"); or score {metric} on the CPU on their own: '
        f"`arena score --metrics {metric} --device cpu`"
    )


GPU_FIX = gpu_fix("tags")


def _cuda_index(device: str, metric: str = "tags") -> int | None:
    """N of ``cuda:N`` (0 for ``cuda``), None for ``cpu``; other devices are refused."""
    device = str(device)
    if device == "cpu":
        return None
    kind, _, index = device.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise ValueError(
            f"metric {metric!r}: device {device!r}: its onnxruntime model runs on cpu, cuda "
            "or cuda:N."
        )
    return int(index or 0)


def providers_for(
    device: str, available: Sequence[str] | None = None, metric: str = "tags"
) -> list[Any]:
    """onnxruntime providers that run an ONNX metric (``metric``: the tagger unless told)
    on ``device``, in order of preference.

    ``cuda:N`` must name device N (onnxruntime's CUDA provider takes device 0 unless
    told). CPU follows CUDA only as the home of operators CUDA lacks; whether CUDA was
    really taken is checked on the session (``session_provider``). A CPU-only
    onnxruntime on ``cuda`` is an error, not a silent CPU run. ``available`` defaults
    to ``onnxruntime.get_available_providers()``.
    """
    index = _cuda_index(device, metric)
    if index is None:
        return [CPU]
    if available is None:
        import onnxruntime

        available = onnxruntime.get_available_providers()
    if CUDA not in available:
        raise ValueError(
            f"metric {metric!r} on {device}: the installed onnxruntime has no {CUDA} (it "
            f"offers {', '.join(available)}), so the model would run on the CPU; "
            f"{gpu_fix(metric)}."
        )
    return [(CUDA, {"device_id": index}), CPU]


def session_provider(session: Any, device: str, metric: str = "tags") -> str:
    """The provider running ``session``, e.g. ``CUDAExecutionProvider (device_id 3)``.

    onnxruntime-gpu drops CUDA with only a logged warning when its CUDA or cuDNN
    libraries fail to load, and runs on the CPU; that is an error here.
    """
    index = _cuda_index(device, metric)
    used = list(session.get_providers())
    if index is None:
        return used[0] if used else CPU
    if not used or used[0] != CUDA:
        import sys

        torch = sys.modules.get("torch")
        cuda = getattr(getattr(torch, "version", None), "cuda", None)
        hint = f"; this torch is built for CUDA {cuda}" if cuda else ""
        raise ValueError(
            f"metric {metric!r} on {device}: onnxruntime did not start {CUDA} and would run on "
            f"{', '.join(used) or 'nothing'}: its CUDA or cuDNN libraries failed to load (its "
            "warning above names the one), usually because onnxruntime-gpu was built for "
            f"another CUDA or cuDNN major version{hint}. Install the onnxruntime-gpu build "
            f'for your CUDA (docs/metrics.md, "The tagger on a GPU"), or score {metric} with '
            "--device cpu."
        )
    got = session.get_provider_options().get(CUDA, {}).get("device_id")
    if got is not None and int(got) != index:
        raise ValueError(
            f"metric {metric!r} on {device}: onnxruntime runs the model on CUDA device {got}, "
            f"not {index}."
        )
    return f"{CUDA} (device_id {index})"


@register_metric
class TagAccuracy(Metric):
    name: ClassVar[str] = "tags"
    version: ClassVar[str] = "wd14-moat-v2.t0.35.p1"
    needs_prompt: ClassVar[bool] = True
    higher_is_better: ClassVar[bool] = True
    description: ClassVar[str] = (
        "Tag accuracy: share of the prompt's general booru tags the WD14 MOAT v2 tagger "
        "finds (p >= 0.35); prompts without a known tag are skipped (NaN)."
    )
    weight_files: ClassVar[tuple[WeightFile, ...]] = (
        WeightFile(TAGGER_REPO, "model.onnx"),
        WeightFile(TAGGER_REPO, "selected_tags.csv"),
    )
    threshold: ClassVar[float] = THRESHOLD

    def __init__(self, session: Any, table: TagTable, device: str = "cpu"):
        self.session = session
        self.table = table
        self.device = device
        # The provider really running the tagger (checked against ``device``): `arena
        # score` prints it and every row's details carry it.
        self.provider = session_provider(session, device)
        self.runtime = f"onnxruntime {self.provider}"
        self.size, self._batch_dim = self._check_io(session, table)
        self.input_name = session.get_inputs()[0].name
        self.output_name = session.get_outputs()[0].name
        self.skipped = 0  # images skipped since loading: their prompt had no countable tag

    @staticmethod
    def _check_io(session: Any, table: TagTable) -> tuple[int, Any]:
        shape = list(session.get_inputs()[0].shape)
        if (
            len(shape) != 4
            or shape[3] != 3
            or not isinstance(shape[1], int)
            or shape[1] != shape[2]
        ):
            raise ValueError(
                f"metric 'tags': the tagger's input has shape {shape}; expected NHWC "
                "[batch, size, size, 3] with a fixed size (448 for wd-v1-4-moat-tagger-v2)."
            )
        out = list(session.get_outputs()[0].shape)
        if isinstance(out[-1], int) and out[-1] != len(table):
            raise ValueError(
                f"metric 'tags': the tagger has {out[-1]} outputs but selected_tags.csv lists "
                f"{len(table)} tags; model.onnx and selected_tags.csv must come from the same "
                f"repo ({TAGGER_REPO})."
            )
        return shape[1], shape[0]

    @classmethod
    def resolve_files(
        cls, weights: str | Path | None = None, sources: WeightSources | None = None
    ) -> tuple[Path, Path]:
        """(model.onnx, selected_tags.csv): ``weights`` is the .onnx file or a folder."""
        model_spec, tags_spec = cls.weight_files
        explicit = Path(weights).expanduser() if weights is not None else None
        if explicit is not None and explicit.is_file():
            return explicit, resolve(cls.name, tags_spec, explicit.parent, sources)
        return (
            resolve(cls.name, model_spec, explicit, sources),
            resolve(cls.name, tags_spec, explicit, sources),
        )

    @classmethod
    def load(cls, request: LoadRequest) -> TagAccuracy:
        """Load the ONNX tagger (fp32 whatever ``dtype``; CUDA device N on ``cuda:N``)."""
        import onnxruntime

        providers = providers_for(request.device)  # before the files: a wrong build fails fast
        model_path, tags_path = cls.resolve_files(request.weights, request.sources)
        table = load_tag_table(tags_path)
        try:
            session = onnxruntime.InferenceSession(str(model_path), providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ValueError(
                f"metric 'tags': {model_path} is not a loadable ONNX model: "
                f"{str(exc).splitlines()[0]}"
            ) from None
        return cls(session, table, device=request.device)

    def preprocessor(self) -> Callable[[PILImage.Image], np.ndarray]:
        """Runs in the job's DataLoader workers: image -> (size, size, 3) BGR float32."""
        return functools.partial(prepare_tagger_image, size=self.size)

    def probabilities(self, inputs: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """(n, n_tags) tagger probabilities of a preprocessed batch."""
        if len(inputs) == 0:
            return np.zeros((0, len(self.table)), dtype=np.float32)
        batch = np.ascontiguousarray(np.stack(list(inputs)).astype(np.float32, copy=False))
        if self._batch_dim == 1:  # a graph exported with a fixed batch of one
            parts = [self._run(batch[i : i + 1]) for i in range(batch.shape[0])]
            return np.concatenate(parts)
        return self._run(batch)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: batch})[0]

    def score_with_details(
        self, inputs: Any, prompts: Sequence[str] | None = None
    ) -> tuple[np.ndarray, list[dict]]:
        self.check_prompts(inputs, prompts)
        probs = self.probabilities(inputs)
        values = np.full(len(prompts), np.nan, dtype=np.float64)
        details: list[dict] = []
        for row, prompt in enumerate(prompts):
            known, n_parsed = self.table.countable(prompt)
            hits = tag_hits(probs[row], [index for _, _, index in known], self.threshold)
            values[row] = tag_accuracy(hits)
            detail: dict[str, Any] = {
                "threshold": self.threshold,
                "provider": self.provider,
                "n_prompt_tags": n_parsed,
                "n_countable": len(known),
                "n_found": int(hits.sum()),
                "tags": [
                    {
                        "tag": tag,
                        "position": position,
                        "probability": float(probs[row, index]),
                        "hit": bool(hit),
                    }
                    for (tag, position, index), hit in zip(known, hits, strict=True)
                ],
            }
            if not known:
                detail["skipped"] = "no general booru tag of the tagger's vocabulary in the prompt"
                self.skipped += 1
            details.append(detail)
        return values, details

    def score_inputs(self, inputs: Any, prompts: Sequence[str] | None = None) -> np.ndarray:
        return self.score_with_details(inputs, prompts)[0]
