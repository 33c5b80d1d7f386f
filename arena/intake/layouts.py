"""The two image-folder layouts people already have, turned into files with their prompts.

* ``<folder>/<prompt_id>_<seed>.png`` (``.jpg``/``.jpeg``/``.webp`` too; a file
  named ``<prompt_id>.png`` has no seed), and
* a folder with ``metadata.jsonl`` or ``metadata.csv`` whose rows map
  ``file_name`` to ``prompt_id`` (or the prompt ``text``), an optional ``seed``
  and any other generation parameters (stored with the image, never in it).

Prompt ids are looked up in ``prompt_set``, or in every set when the id is in
exactly one. A file that cannot be matched to a prompt is skipped with its reason.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arena.intake.reading import (
    ID_KEYS,
    TEXT_KEYS,
    IngestError,
    decode_text,
    first_key,
    jsonl_objects,
    opt_str,
    short,
)

if TYPE_CHECKING:
    from arena.storage.store import Store

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
METADATA_FILES = ("metadata.jsonl", "metadata.csv")
FILE_KEYS = ("file_name", "filename", "file", "image")


@dataclass(frozen=True)
class ImageItem:
    """A file to import with the prompt and seed it belongs to."""

    name: str
    path: str
    prompt_id: int
    seed: int | None
    params: dict


class PromptIndex:
    """Find prompt ids by external id (or text) in one set, or in all sets if unambiguous."""

    def __init__(self, store: Store, prompt_set: str | None):
        prompts = store.prompts_frame()
        sets = sorted(set(prompts["prompt_set"]))
        if prompt_set is not None:
            prompts = prompts[prompts["prompt_set"] == prompt_set]
        if prompts.empty:
            if prompt_set is not None:
                raise IngestError(
                    f"prompt set {prompt_set!r} has no prompts (known sets: "
                    f"{', '.join(sets) or 'none'}); import it first with "
                    f"`arena import-prompts FILE --set {prompt_set}`."
                )
            raise IngestError(
                "the workspace has no prompts; import them first with "
                "`arena import-prompts FILE --set NAME`, then import the images."
            )
        self.where = f"prompt set {prompt_set!r}" if prompt_set else "any prompt set"
        self.by_id: dict[str, list[tuple[str, int]]] = {}
        self.by_text: dict[str, list[tuple[str, int]]] = {}
        for pid, pset, ext, text in zip(
            prompts["prompt_id"],
            prompts["prompt_set"],
            prompts["external_id"],
            prompts["text"],
            strict=True,
        ):
            pid = int(pid)
            self.by_id.setdefault(ext, []).append((pset, pid))
            self.by_text.setdefault(text, []).append((pset, pid))

    def has_id(self, ext: str) -> bool:
        return ext in self.by_id

    def resolve(self, key: str, by_text: bool = False) -> int | str:
        """The prompt id, or a reason string when there is none or more than one."""
        found = (self.by_text if by_text else self.by_id).get(key)
        what = f"prompt text {short(key)}" if by_text else f"prompt id {key!r}"
        if not found:
            return (
                f"{what} is not in {self.where}; import the prompts first "
                "(arena import-prompts) or name their set with --prompt-set"
            )
        if len(found) > 1:
            sets = ", ".join(sorted({s for s, _ in found}))
            return f"{what} is in several prompt sets ({sets}); choose one with --prompt-set"
        return found[0][1]


def _seed(value: Any) -> int | str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return f"seed {value!r} is not an integer"


def _read_metadata(path: Path) -> list[tuple[int, dict]]:
    """(line, row) of a metadata.jsonl / metadata.csv; IngestError naming the line if bad."""
    text = decode_text(path)
    rows: list[tuple[int, dict]] = []
    if path.suffix == ".jsonl":
        example = '{"file_name": "a.png", "prompt_id": "p1", "seed": 0}'
        rows.extend(jsonl_objects(path, text, example))
    else:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        for row in reader:
            if None in row or None in row.values():
                raise IngestError(
                    f"{path}, line {reader.line_num}: the row has a different number of fields "
                    "than the header; quote fields that contain a comma."
                )
            rows.append((reader.line_num, dict(row)))
    for n, obj in rows:
        if first_key(obj.keys(), FILE_KEYS) is None:
            raise IngestError(
                f"{path}, line {n}: no 'file_name' column; expected file_name and prompt_id "
                "(or text), optionally seed and other generation parameters."
            )
        if first_key(obj.keys(), ID_KEYS) is None and first_key(obj.keys(), TEXT_KEYS) is None:
            raise IngestError(
                f"{path}, line {n}: no 'prompt_id' or 'text' column; expected each row to say "
                "which prompt the file was generated from."
            )
    return rows


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def _plan_by_name(
    folder: Path, names: list[str], index: PromptIndex, skipped: list[tuple[str, str]]
):
    """Items of the ``<prompt_id>_<seed>.png`` layout."""
    for name in names:
        stem = name.rsplit(".", 1)[0]
        ext, seed = stem, None
        head, _, tail = stem.rpartition("_")
        if head and tail.isdigit() and (index.has_id(head) or not index.has_id(stem)):
            ext, seed = head, int(tail)
        found = index.resolve(ext)
        if isinstance(found, str):
            skipped.append((name, f"{found} (from the file name <prompt_id>_<seed>)"))
            continue
        yield ImageItem(name, str(folder / name), found, seed, {})


def _plan_by_metadata(
    folder: Path, meta: Path, names: list[str], index: PromptIndex, skipped: list[tuple[str, str]]
):
    """Items of a folder described by metadata.jsonl / metadata.csv."""
    rows = _read_metadata(meta)
    listed = set()
    for line, obj in rows:
        file_key = first_key(obj.keys(), FILE_KEYS)
        rel = str(obj[file_key]).strip()
        label = f"{rel} ({meta.name} line {line})"
        listed.add(rel)
        path = folder / rel
        if not path.is_file():
            skipped.append((label, "file not found in the folder"))
            continue
        id_key = first_key(obj.keys(), ID_KEYS)
        text_key = first_key(obj.keys(), TEXT_KEYS)
        if id_key is not None and opt_str(obj[id_key]) is not None:
            found = index.resolve(str(obj[id_key]).strip())
        else:
            found = index.resolve(" ".join(str(obj[text_key] or "").split()), by_text=True)
        if isinstance(found, str):
            skipped.append((label, found))
            continue
        seed = _seed(obj.get("seed"))
        if isinstance(seed, str):
            skipped.append((label, seed))
            continue
        used = {file_key, id_key, text_key, "seed"}
        params = {k: v for k, v in obj.items() if k not in used and v not in (None, "")}
        yield ImageItem(rel, str(path), found, seed, params)
    for name in names:
        if name not in listed:
            skipped.append((name, f"not listed in {meta.name}"))


def plan_folder(
    store: Store, folder: str | Path, prompt_set: str | None, skipped: list[tuple[str, str]]
) -> list[ImageItem]:
    """The files of ``folder`` to import, with their prompts; unusable ones go to ``skipped``
    as (name, reason)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise IngestError(f"{folder}: no such folder; expected a folder of generated images.")
    entries = sorted(os.listdir(folder))
    names = [n for n in entries if (folder / n).is_file() and not n.startswith(".")]
    metas = [m for m in METADATA_FILES if m in names]
    images = [n for n in names if _is_image_name(n)]
    for n in names:
        if not _is_image_name(n) and n not in METADATA_FILES:
            skipped.append((n, f"not an image file name (expected {', '.join(IMAGE_SUFFIXES)})"))
    if not images:
        subdirs = [n for n in entries if (folder / n).is_dir() and not n.startswith(".")]
        hint = (
            f"; it has subfolders ({', '.join(subdirs[:5])}): import each as its own model, "
            f"e.g. `arena import-images {folder / subdirs[0]} --model {subdirs[0]}`"
            if subdirs
            else ""
        )
        raise IngestError(
            f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) in the folder{hint}."
        )
    index = PromptIndex(store, prompt_set)
    if metas:
        return list(_plan_by_metadata(folder, folder / metas[0], images, index, skipped))
    return list(_plan_by_name(folder, images, index, skipped))
