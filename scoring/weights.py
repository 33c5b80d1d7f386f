"""Where weights come from: an explicit path, the weights folder, the Hugging Face cache.

Resolution order for each ``WeightFile`` a metric declares:

1. the explicit path given to ``from_pretrained(weights=...)`` (a file, or a folder
   that holds the file under its own name or under ``<repo_id>/<filename>``);
2. ``$ARENA_WEIGHTS_DIR`` (setting ``weights_dir``): ``<dir>/<repo_id>/<filename>``
   or ``<dir>/<filename>``;
3. the Hugging Face cache (``$HF_HOME`` / ``~/.cache/huggingface``), offline;
4. a download from the hub, only when ``ARENA_ALLOW_NETWORK=1``.

When none has the file, ``MissingWeightsError`` names the metric, the file, every
place searched and the setting or command that provides it.
"""

from __future__ import annotations

import os
from pathlib import Path

from scoring.metrics.base import WeightFile


class MissingWeightsError(FileNotFoundError):
    """A metric's weight file is not in any of the places it is looked for."""


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def weights_dir() -> Path | None:
    value = os.environ.get("ARENA_WEIGHTS_DIR", "")
    return Path(value).expanduser() if value else None


def network_allowed() -> bool:
    return _truthy(os.environ.get("ARENA_ALLOW_NETWORK"))


def _relative(spec: WeightFile) -> str:
    return f"{spec.subfolder}/{spec.filename}" if spec.subfolder else spec.filename


def candidates(spec: WeightFile, explicit: str | Path | None) -> list[Path]:
    """Local paths to try, in order (explicit path first, then the weights folder)."""
    found: list[Path] = []
    rel = _relative(spec)
    if explicit is not None:
        path = Path(explicit).expanduser()
        if spec.is_folder:
            found += [path, path / spec.repo_id]
        else:
            found += [path, path / spec.filename, path / spec.repo_id / rel]
    folder = weights_dir()
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


def locate(spec: WeightFile) -> Path | None:
    """Where ``spec`` is found without an explicit path and without downloading, or None."""
    for path in candidates(spec, None):
        if _exists(path, spec):
            return path
    return _from_hf_cache(spec)


def resolve(metric: str, spec: WeightFile, explicit: str | Path | None = None) -> Path:
    """The local path of ``spec`` (a file, or a folder when ``spec.is_folder``)."""
    searched = candidates(spec, explicit)
    for path in searched:
        if _exists(path, spec):
            return path
    if explicit is None:
        cached = _from_hf_cache(spec)
        if cached is not None:
            return cached
        if network_allowed():
            return _download(spec)
    raise MissingWeightsError(_missing_message(metric, spec, searched, explicit))


def _missing_message(
    metric: str, spec: WeightFile, searched: list[Path], explicit: str | Path | None
) -> str:
    what = "folder" if spec.is_folder else "file"
    places = [str(p) for p in searched]
    if explicit is None:
        hf_home = os.environ.get("HF_HOME", "~/.cache/huggingface")
        places.append(f"the Hugging Face cache ({hf_home}/hub, repo {spec.repo_id})")
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
