"""Where a diffusers model comes from, checked before anything heavy is imported.

A model's source is one of: a local diffusers folder (with ``model_index.json``),
a single ``.safetensors`` checkpoint (A1111/ComfyUI style), or a Hugging Face
hub id (``owner/name``). These checks run at ``arena add-model`` and again
before a model is loaded by ``arena generate``, so a moved or mistyped path is
reported with what was expected instead of a diffusers stack trace.
No torch here: the web side imports this module too.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
EXPECTED = (
    "expected a diffusers folder containing model_index.json (what save_pretrained writes), "
    "a hub id like owner/name, or with --single-file a .safetensors checkpoint"
)


class CheckpointError(ValueError):
    """A model source that cannot be loaded; the message names it and the fix."""


@dataclass(frozen=True)
class ModelSource:
    """A validated model source: ``format`` is "diffusers", "single_file" or "hub"."""

    source: str
    format: str
    config: str | None = None  # single files: a diffusers folder/hub id giving the configs

    def params(self) -> dict:
        out = {"format": self.format}
        if self.config:
            out["config"] = self.config
        return out


def hub_cached(repo_id: str, filename: str = "model_index.json") -> bool:
    """Whether the hub model's ``filename`` is in the local Hugging Face cache."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    found = try_to_load_from_cache(repo_id, filename)
    return isinstance(found, str)


def check_diffusers(source: str, allow_network: bool) -> ModelSource:
    """A diffusers folder or hub id that can be loaded, or a CheckpointError saying why not."""
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            hint = ""
            if any(path.glob("*.safetensors")):
                hint = " It holds .safetensors files: register one with --single-file FILE."
            raise CheckpointError(
                f"checkpoint folder {path} has no model_index.json, so it is not a diffusers "
                f"pipeline folder; {EXPECTED}.{hint}"
            )
        return ModelSource(str(path.resolve()), "diffusers")
    if path.is_file():
        if path.suffix == ".safetensors":
            raise CheckpointError(
                f"{path} is a single .safetensors checkpoint: register it with "
                f"--single-file {path} (not --diffusers)."
            )
        raise CheckpointError(f"checkpoint path {path} is a file, not a folder; {EXPECTED}.")
    if HUB_ID.match(source) and not source.startswith((".", "~")):
        if not allow_network and not hub_cached(source):
            raise CheckpointError(
                f"checkpoint path {source} does not exist, and as a hub id it is not in the "
                "local Hugging Face cache while downloads are off. Give the path of a local "
                "diffusers folder (with model_index.json), download the model first, or set "
                f"ARENA_ALLOW_NETWORK=1 to let the arena download {source} from the hub."
            )
        return ModelSource(source, "hub")
    raise CheckpointError(f"checkpoint path {path} does not exist; {EXPECTED}.")


def check_single_file(source: str, config: str | None, allow_network: bool) -> ModelSource:
    """A ``.safetensors`` checkpoint (plus optional config folder/hub id), or an error."""
    path = Path(source).expanduser()
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise CheckpointError(
            f"single-file checkpoint {path} {what}; expected a .safetensors file "
            "(for a diffusers folder with model_index.json use --diffusers)."
        )
    if path.suffix in (".ckpt", ".pt", ".pth", ".bin"):
        raise CheckpointError(
            f"{path} is a pickled {path.suffix} checkpoint, which can run code when loaded; "
            "convert it to .safetensors first (e.g. with the safetensors convert script)."
        )
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path} is not a .safetensors file; {EXPECTED}.")
    _check_safetensors_header(path)
    if config is not None:
        config = check_diffusers(config, allow_network).source
    return ModelSource(str(path.resolve()), "single_file", config)


def _check_safetensors_header(path: Path) -> None:
    """Read the safetensors header (8-byte length + JSON) so a corrupt file fails early."""
    try:
        with path.open("rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            if not 2 <= size <= 100_000_000:
                raise ValueError(f"header length {size}")
            header = json.loads(fh.read(size))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path} is not a readable .safetensors file ({exc}); re-download or re-export it."
        ) from None


def check_source(source: str, fmt: str, config: str | None, allow_network: bool) -> ModelSource:
    """Re-check a registered model's source (``fmt`` from its params) before loading it."""
    if fmt == "single_file":
        return check_single_file(source, config, allow_network)
    return check_diffusers(source, allow_network)
