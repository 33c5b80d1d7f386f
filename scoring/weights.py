"""Where weights come from: an explicit path, the weights folder, the Hugging Face cache.

Resolution order for each ``WeightFile`` a metric declares:

1. the explicit path given to ``from_pretrained(weights=...)`` (a file, or a folder
   that holds the file under its own name or under ``<repo_id>/<filename>``);
2. the weights folder (``WeightSources.folder``, the ``weights_dir`` setting):
   ``<dir>/<repo_id>/<filename>`` or ``<dir>/<filename>``;
3. the Hugging Face cache (huggingface_hub's, ``$HF_HOME``), offline;
4. a download from the hub, only when ``WeightSources.allow_network`` (the
   ``allow_network`` setting).

The folder and the network permission are arguments (a ``WeightSources``), never read
from the environment here: the ``arena`` commands build one from the workspace's
settings (:meth:`WeightSources.of`) and pass it down through ``build_metrics``,
``from_pretrained`` and the extractors' ``load``. Without one, only explicit paths and
the Hugging Face cache are searched.

When none has the file, ``MissingWeightsError`` names the metric, the file, every
place searched and the setting or command that provides it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scoring.metrics.base import WeightFile


class MissingWeightsError(FileNotFoundError):
    """A metric's weight file is not in any of the places it is looked for."""


@dataclass(frozen=True)
class WeightSources:
    """Where weights are looked for besides an explicit path, and whether to download."""

    folder: Path | None = None  # the weights_dir setting
    allow_network: bool = False  # the allow_network setting

    @classmethod
    def of(cls, settings) -> WeightSources:
        """From the workspace's settings (``weights_dir``, ``allow_network``)."""
        folder = settings.weights_dir
        return cls(Path(folder).expanduser() if folder else None, bool(settings.allow_network))


LOCAL_ONLY = WeightSources()  # explicit paths and the Hugging Face cache only


def _relative(spec: WeightFile) -> str:
    return f"{spec.subfolder}/{spec.filename}" if spec.subfolder else spec.filename


def candidates(
    spec: WeightFile, explicit: str | Path | None, sources: WeightSources | None = None
) -> list[Path]:
    """Local paths to try, in order (explicit path first, then the weights folder)."""
    found: list[Path] = []
    rel = _relative(spec)
    if explicit is not None:
        path = Path(explicit).expanduser()
        if spec.is_folder:
            found += [path, path / spec.repo_id]
        else:
            found += [path, path / spec.filename, path / spec.repo_id / rel]
    folder = (sources or LOCAL_ONLY).folder
    if folder is not None:
        if spec.is_folder:
            found += [folder / spec.repo_id]
        else:
            found += [folder / spec.repo_id / rel, folder / spec.filename]
    return found


def _exists(path: Path, spec: WeightFile) -> bool:
    if spec.is_folder:
        return (path / _relative(spec)).is_file()
    return path.is_file()


def _from_hf_cache(spec: WeightFile) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ModuleNotFoundError:
        return None
    hit = try_to_load_from_cache(spec.repo_id, _relative(spec))
    if isinstance(hit, str) and Path(hit).is_file():
        path = Path(hit)
        return (
            path.parent.parent
            if spec.is_folder and spec.subfolder
            else (path.parent if spec.is_folder else path)
        )
    return None


def _download(spec: WeightFile) -> Path:
    from huggingface_hub import hf_hub_download, snapshot_download

    if spec.is_folder:
        return Path(snapshot_download(spec.repo_id))
    return Path(hf_hub_download(spec.repo_id, spec.filename, subfolder=spec.subfolder or None))


def locate(spec: WeightFile, sources: WeightSources | None = None) -> Path | None:
    """Where ``spec`` is found without an explicit path and without downloading, or None."""
    for path in candidates(spec, None, sources):
        if _exists(path, spec):
            return path
    return _from_hf_cache(spec)


def resolve(
    metric: str,
    spec: WeightFile,
    explicit: str | Path | None = None,
    sources: WeightSources | None = None,
) -> Path:
    """The local path of ``spec`` (a file, or a folder when ``spec.is_folder``).

    ``sources`` (default: ``LOCAL_ONLY``) adds the weights folder and allows downloads.
    """
    sources = sources or LOCAL_ONLY
    searched = candidates(spec, explicit, sources)
    for path in searched:
        if _exists(path, spec):
            return path
    if explicit is None:
        cached = _from_hf_cache(spec)
        if cached is not None:
            return cached
        if sources.allow_network:
            return _download(spec)
    raise MissingWeightsError(_missing_message(metric, spec, searched, explicit))


def read_torch_file(metric: str, path: Path, expected: str) -> Any:
    """``torch.load`` of a downloaded checkpoint with ``weights_only`` (no pickled code runs);
    a file torch cannot read is one ValueError naming the metric, the file and ``expected``
    (what file, from where), so every metric reports a wrong file the same way."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise ValueError(
            f"metric {metric!r}: {path} is not a readable torch checkpoint of tensors "
            f"({str(exc).strip().splitlines()[0]}). {expected}"
        ) from None


def hf_hub_cache() -> str:
    """The Hugging Face hub cache folder (huggingface_hub's own resolution of $HF_HOME)."""
    try:
        from huggingface_hub import constants
    except ModuleNotFoundError:
        return "~/.cache/huggingface/hub"
    return str(constants.HF_HUB_CACHE)


def _missing_message(
    metric: str, spec: WeightFile, searched: list[Path], explicit: str | Path | None
) -> str:
    what = "folder" if spec.is_folder else "file"
    places = [str(p) for p in searched]
    if explicit is None:
        places.append(f"the Hugging Face cache ({hf_hub_cache()}, repo {spec.repo_id})")
    lines = [
        f"metric {metric!r} needs the weight {what} {_relative(spec)!r} "
        f"(hub repo {spec.repo_id}) and it was not found. Searched:",
        *[f"  - {p}" for p in places],
        "Provide it in one of these ways:",
        f"  - pass the path: arena score --metrics {metric} --weights {metric}=/path/to/"
        f"{spec.filename}",
        f"  - put it in a weights folder: $ARENA_WEIGHTS_DIR/{spec.repo_id}/{_relative(spec)}",
        f"  - download it once: huggingface-cli download {spec.repo_id} {_relative(spec)}",
        "  - or let the arena download it: ARENA_ALLOW_NETWORK=1",
    ]
    if explicit is not None:
        lines.insert(1, f"  (an explicit path was given, so only it was searched: {explicit})")
    return "\n".join(lines)
