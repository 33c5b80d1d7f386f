"""Prompt sets and image folders into the database.

Prompts come from CSV, JSONL or TXT files (one prompt per row; optional id,
tags and category). A prompt file is read and checked completely before
anything is written: a missing column, a bad line or bad encoding refuses the
whole file with an error naming the file and the line.

Images come from folders in the two layouts people already have:

* ``<folder>/<prompt_id>_<seed>.png`` (``.jpg``/``.jpeg``/``.webp`` too; a file
  named ``<prompt_id>.png`` has no seed), and
* a folder with ``metadata.jsonl`` or ``metadata.csv`` whose rows map
  ``file_name`` to ``prompt_id`` (or the prompt ``text``), an optional ``seed``
  and any other generation parameters (stored with the image, never in it).

Prompt ids are looked up in ``prompt_set``, or in every set when the id is in
exactly one. Re-running an import adds only what is new. Each file that
cannot be imported is skipped with its reason and nothing of it is written;
the report counts what was added, what was already present and what was
skipped and why. Decoding, hashing and writing run in worker processes on
small batches, and rows are committed per chunk, so the memory of an import
does not grow with the number of images.
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select
from sqlalchemy.exc import OperationalError

from arena.storage import db
from arena.storage.images import init_worker, store_files

if TYPE_CHECKING:
    from arena.storage.store import Store

PROMPT_SUFFIXES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".txt": "txt",
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
METADATA_FILES = ("metadata.jsonl", "metadata.csv")
TEXT_KEYS = ("text", "prompt")
ID_KEYS = ("id", "prompt_id")
FILE_KEYS = ("file_name", "filename", "file", "image")
CHUNK_ROWS = 500  # image rows per database transaction
BATCH_FILES = 16  # files per task sent to a worker process
IN_PROCESS_BELOW = 64  # smaller imports skip the process pool (its start costs more)


class IngestError(ValueError):
    """An import that cannot go ahead; the message names the input and the fix."""


# -- prompts ---------------------------------------------------------------------


@dataclass(frozen=True)
class PromptRecord:
    """One prompt read from a file; ``line`` is where it starts (for messages)."""

    line: int
    text: str
    external_id: str | None = None
    tags: str = ""
    category: str = ""


@dataclass
class PromptReport:
    file: str
    prompt_set: str
    added: int = 0
    present: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def summary(self, limit: int = 20) -> str:
        head = (
            f"{self.file} -> prompt set {self.prompt_set!r}: added {self.added}, "
            f"already present {self.present}, skipped {len(self.skipped)}"
        )
        return _with_skips(head, self.skipped, limit)


def _decode_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise IngestError(
            f"{path}, line {line}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at column "
            f"{column}); expected a UTF-8 text file. Re-save it as UTF-8, e.g. "
            f"`iconv -f latin1 -t utf-8 {path.name} > fixed{path.suffix}`."
        ) from None


def _tags(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(t).strip() for t in value if str(t).strip())
    return ", ".join(t.strip() for t in str(value).split(",") if t.strip())


def _opt_str(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _first_key(keys, candidates) -> str | None:
    lowered = {k.strip().lower(): k for k in keys if k is not None}
    for c in candidates:
        if c in lowered:
            return lowered[c]
    return None


def _read_delimited(path: Path, text: str, delimiter: str) -> list[PromptRecord]:
    reader = csv.DictReader(
        io.StringIO(text, newline=""), delimiter=delimiter, skipinitialspace=True
    )
    header = reader.fieldnames or []
    text_key = _first_key(header, TEXT_KEYS)
    if text_key is None:
        raise IngestError(
            f"{path}, line 1: no 'text' column (found {', '.join(map(repr, header)) or 'none'}); "
            "expected a header row with a 'text' (or 'prompt') column and optionally 'id', "
            "'tags' and 'category'. Add the header row or rename the column."
        )
    id_key = _first_key(header, ID_KEYS)
    tags_key = _first_key(header, ("tags",))
    cat_key = _first_key(header, ("category",))
    records = []
    for row in reader:
        line = reader.line_num
        if None in row:
            raise IngestError(
                f"{path}, line {line}: {len(header) + len(row[None])} fields but the header has "
                f"{len(header)}; quote fields that contain a {delimiter!r}."
            )
        missing = [k for k, v in row.items() if v is None]
        if missing:
            raise IngestError(
                f"{path}, line {line}: missing column(s) {', '.join(map(repr, missing))} "
                f"(the row has fewer fields than the header's {len(header)}); fill them in, "
                "empty values are fine."
            )
        records.append(
            PromptRecord(
                line=line,
                text=row[text_key] or "",
                external_id=_opt_str(row.get(id_key)) if id_key else None,
                tags=_tags(row.get(tags_key)) if tags_key else "",
                category=(row.get(cat_key) or "").strip() if cat_key else "",
            )
        )
    return records


def _jsonl_objects(path: Path, text: str, example: str):
    """(line number, object) for each non-blank line; an IngestError names the bad line."""
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise IngestError(
                f"{path}, line {line_no}: not valid JSON ({exc.msg} at column {exc.colno}); "
                f"expected one JSON object per line such as {example}."
            ) from None
        if not isinstance(obj, dict):
            raise IngestError(
                f"{path}, line {line_no}: a JSON {type(obj).__name__}, expected an object such "
                f"as {example}."
            )
        yield line_no, obj


def _read_jsonl(path: Path, text: str) -> list[PromptRecord]:
    records = []
    example = '{"text": "1girl, red hair", "id": "p1", "tags": [...], "category": "..."}'
    for line_no, obj in _jsonl_objects(path, text, example):
        text_key = _first_key(obj.keys(), TEXT_KEYS)
        if text_key is None or not isinstance(obj[text_key], str):
            raise IngestError(
                f"{path}, line {line_no}: no string 'text' (or 'prompt') field (found keys "
                f'{", ".join(map(repr, obj)) or "none"}); add the prompt text as "text".'
            )
        id_key = _first_key(obj.keys(), ID_KEYS)
        records.append(
            PromptRecord(
                line=line_no,
                text=obj[text_key],
                external_id=_opt_str(obj.get(id_key)) if id_key else None,
                tags=_tags(obj.get("tags")),
                category=_opt_str(obj.get("category")) or "",
            )
        )
    return records


def _read_txt(text: str) -> list[PromptRecord]:
    return [
        PromptRecord(line=n, text=line)
        for n, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]


def read_prompt_file(path: str | Path, max_chars: int = 2000) -> list[PromptRecord]:
    """Read and check every prompt of ``path``; raise IngestError naming the line if any is bad.

    A prompt without an id gets its 1-based position among the file's prompts,
    so re-importing the same file finds the same ids.
    """
    path = Path(path)
    kind = PROMPT_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise IngestError(
            f"{path}: unknown prompt file type {path.suffix!r}; expected .csv, .tsv, .jsonl or "
            ".txt (one prompt per line)."
        )
    if not path.is_file():
        raise IngestError(f"{path}: no such file.")
    text = _decode_text(path)
    if kind in ("csv", "tsv"):
        records = _read_delimited(path, text, "," if kind == "csv" else "\t")
    elif kind == "jsonl":
        records = _read_jsonl(path, text)
    else:
        records = _read_txt(text)
    if not records:
        raise IngestError(f"{path}: no prompts found; expected one prompt per row.")
    seen: dict[str, int] = {}
    out = []
    for position, rec in enumerate(records, start=1):
        clean = " ".join(rec.text.split())
        if not clean:
            raise IngestError(
                f"{path}, line {rec.line}: the prompt text is empty; fill it in or remove the row."
            )
        if len(clean) > max_chars:
            raise IngestError(
                f"{path}, line {rec.line}: the prompt has {len(clean)} characters, more than the "
                f"limit of {max_chars} (setting max_prompt_chars); shorten it or raise the limit."
            )
        ext = rec.external_id or str(position)
        if ext in seen:
            raise IngestError(
                f"{path}, line {rec.line}: prompt id {ext!r} is already used on line {seen[ext]}; "
                "ids must be unique within a file."
            )
        seen[ext] = rec.line
        out.append(PromptRecord(rec.line, clean, ext, rec.tags, rec.category))
    return out


def import_prompts(
    store: Store, path: str | Path, prompt_set: str, category: str | None = None
) -> PromptReport:
    """Add the prompts of ``path`` to ``prompt_set``; prompts already there are left alone.

    ``category`` is used for rows that have none. A prompt id already in the set
    with a different text is skipped and reported (ids never change meaning).
    """
    prompt_set = prompt_set.strip()
    if not prompt_set:
        raise IngestError("the prompt set name is empty; give one with --set NAME.")
    records = read_prompt_file(path, store.settings.max_prompt_chars)
    report = PromptReport(str(path), prompt_set)
    with store.session() as s:
        existing = dict(
            s.execute(
                select(db.Prompt.external_id, db.Prompt.text).where(
                    db.Prompt.prompt_set == prompt_set
                )
            ).all()
        )
        rows = []
        for rec in records:
            old = existing.get(rec.external_id)
            if old is not None:
                if old == rec.text:
                    report.present += 1
                else:
                    report.skipped.append(
                        (
                            f"line {rec.line}",
                            f"prompt id {rec.external_id!r} is already in set {prompt_set!r} "
                            f"with another text ({_short(old)}); give this prompt a new id or "
                            "import it into another --set",
                        )
                    )
                continue
            rows.append(
                {
                    "prompt_set": prompt_set,
                    "external_id": rec.external_id,
                    "text": rec.text,
                    "tags": rec.tags,
                    "category": rec.category or (category or ""),
                }
            )
        if rows:
            s.execute(insert(db.Prompt), rows)
        report.added = len(rows)
    return report


def _short(text: str, n: int = 40) -> str:
    return repr(text if len(text) <= n else text[: n - 3] + "...")


# -- images ----------------------------------------------------------------------


@dataclass(frozen=True)
class ImageItem:
    """A file to import with the prompt and seed it belongs to."""

    name: str
    path: str
    prompt_id: int
    seed: int | None
    params: dict


@dataclass
class ImageReport:
    folder: str
    model: str
    added: int = 0
    present: int = 0
    broken: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def summary(self, limit: int = 20) -> str:
        head = (
            f"{self.folder} -> model {self.model!r}: added {self.added}, already present "
            f"{self.present}, skipped {len(self.skipped)}"
        )
        if self.broken:
            head += f" (of the added, {self.broken} are one flat colour: flagged broken)"
        return _with_skips(head, self.skipped, limit)


def _with_skips(head: str, skipped: list[tuple[str, str]], limit: int) -> str:
    if not skipped:
        return head
    lines = [head + ":"]
    lines += [f"  {name}: {reason}" for name, reason in skipped[:limit]]
    if len(skipped) > limit:
        counts = Counter(reason.split(";")[0].split("(")[0].strip() for _n, reason in skipped)
        lines.append(f"  ... and {len(skipped) - limit} more; by reason:")
        lines += [f"    {n:>6}  {reason}" for reason, n in counts.most_common()]
    return "\n".join(lines)


class _PromptIndex:
    """Find prompt ids by external id (or text) in one set, or in all sets if unambiguous."""

    def __init__(self, store: Store, prompt_set: str | None):
        query = select(db.Prompt.id, db.Prompt.prompt_set, db.Prompt.external_id, db.Prompt.text)
        if prompt_set is not None:
            query = query.where(db.Prompt.prompt_set == prompt_set)
        with store.session() as s:
            rows = s.execute(query).all()
            sets = sorted(set(s.scalars(select(db.Prompt.prompt_set).distinct())))
        if not rows:
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
        for pid, pset, ext, text in rows:
            self.by_id.setdefault(ext, []).append((pset, pid))
            self.by_text.setdefault(text, []).append((pset, pid))

    def has_id(self, ext: str) -> bool:
        return ext in self.by_id

    def resolve(self, key: str, by_text: bool = False) -> int | str:
        """The prompt id, or a reason string when there is none or more than one."""
        found = (self.by_text if by_text else self.by_id).get(key)
        what = f"prompt text {_short(key)}" if by_text else f"prompt id {key!r}"
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
    text = _decode_text(path)
    rows: list[tuple[int, dict]] = []
    if path.suffix == ".jsonl":
        example = '{"file_name": "a.png", "prompt_id": "p1", "seed": 0}'
        rows.extend(_jsonl_objects(path, text, example))
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
        if _first_key(obj.keys(), FILE_KEYS) is None:
            raise IngestError(
                f"{path}, line {n}: no 'file_name' column; expected file_name and prompt_id "
                "(or text), optionally seed and other generation parameters."
            )
        if _first_key(obj.keys(), ID_KEYS) is None and _first_key(obj.keys(), TEXT_KEYS) is None:
            raise IngestError(
                f"{path}, line {n}: no 'prompt_id' or 'text' column; expected each row to say "
                "which prompt the file was generated from."
            )
    return rows


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def _plan_by_name(folder: Path, names: list[str], index: _PromptIndex, report: ImageReport):
    """Items of the ``<prompt_id>_<seed>.png`` layout."""
    for name in names:
        stem = name.rsplit(".", 1)[0]
        ext, seed = stem, None
        head, _, tail = stem.rpartition("_")
        if head and tail.isdigit() and (index.has_id(head) or not index.has_id(stem)):
            ext, seed = head, int(tail)
        found = index.resolve(ext)
        if isinstance(found, str):
            report.skipped.append((name, f"{found} (from the file name <prompt_id>_<seed>)"))
            continue
        yield ImageItem(name, str(folder / name), found, seed, {})


def _plan_by_metadata(
    folder: Path, meta: Path, names: list[str], index: _PromptIndex, report: ImageReport
):
    """Items of a folder described by metadata.jsonl / metadata.csv."""
    rows = _read_metadata(meta)
    listed = set()
    for line, obj in rows:
        file_key = _first_key(obj.keys(), FILE_KEYS)
        rel = str(obj[file_key]).strip()
        label = f"{rel} ({meta.name} line {line})"
        listed.add(rel)
        path = folder / rel
        if not path.is_file():
            report.skipped.append((label, "file not found in the folder"))
            continue
        id_key = _first_key(obj.keys(), ID_KEYS)
        text_key = _first_key(obj.keys(), TEXT_KEYS)
        if id_key is not None and _opt_str(obj[id_key]) is not None:
            found = index.resolve(str(obj[id_key]).strip())
        else:
            found = index.resolve(" ".join(str(obj[text_key] or "").split()), by_text=True)
        if isinstance(found, str):
            report.skipped.append((label, found))
            continue
        seed = _seed(obj.get("seed"))
        if isinstance(seed, str):
            report.skipped.append((label, seed))
            continue
        used = {file_key, id_key, text_key, "seed"}
        params = {k: v for k, v in obj.items() if k not in used and v not in (None, "")}
        yield ImageItem(rel, str(path), found, seed, params)
    for name in names:
        if name not in listed:
            report.skipped.append((name, f"not listed in {meta.name}"))


def plan_folder(
    store: Store, folder: str | Path, prompt_set: str | None, report: ImageReport
) -> list[ImageItem]:
    """The files of ``folder`` to import, with their prompts; unusable ones go to ``report``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise IngestError(f"{folder}: no such folder; expected a folder of generated images.")
    entries = sorted(os.listdir(folder))
    names = [n for n in entries if (folder / n).is_file() and not n.startswith(".")]
    metas = [m for m in METADATA_FILES if m in names]
    images = [n for n in names if _is_image_name(n)]
    for n in names:
        if not _is_image_name(n) and n not in METADATA_FILES:
            report.skipped.append(
                (n, f"not an image file name (expected {', '.join(IMAGE_SUFFIXES)})")
            )
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
    index = _PromptIndex(store, prompt_set)
    if metas:
        return list(_plan_by_metadata(folder, folder / metas[0], images, index, report))
    return list(_plan_by_name(folder, images, index, report))


def _batches(items: list[ImageItem], size: int) -> Iterator[list[ImageItem]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _pool(workers: int) -> ProcessPoolExecutor:
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=init_worker)


def _stored_results(
    items: list[ImageItem], root: str, max_pixels: int, workers: int, display: str
) -> Iterator[tuple[ImageItem, tuple]]:
    """(item, worker result) in order; at most a few batches per worker in flight.

    Workers also write each image's display rendition (``display``: the display size).
    """
    if workers <= 1 or len(items) < IN_PROCESS_BELOW:
        for batch in _batches(items, BATCH_FILES):
            jobs = [(it.name, it.path) for it in batch]
            results = store_files(root, jobs, max_pixels, display)
            yield from zip(batch, results, strict=True)
        return
    with _pool(workers) as pool:
        batches = _batches(items, BATCH_FILES)
        pending: deque = deque()

        def submit() -> None:
            batch = next(batches, None)
            if batch is not None:
                jobs = [(it.name, it.path) for it in batch]
                pending.append((batch, pool.submit(store_files, root, jobs, max_pixels, display)))

        for _ in range(workers * 3):
            submit()
        while pending:
            batch, future = pending.popleft()
            results = future.result()
            submit()
            yield from zip(batch, results, strict=True)


class _ImageWriter:
    """Commits image rows per chunk, checking each against what the model already has."""

    def __init__(self, store: Store, model: str, source: str, report: ImageReport):
        self.store, self.model, self.source, self.report = store, model, source, report
        with store.session() as s:
            existing = s.scalar(select(db.Model.id).where(db.Model.name == model))
        # An existing name is checked now (add_model refuses a collision and writes nothing);
        # a new model is created with the first chunk that has something to add.
        self.model_id = self._register() if existing is not None else None

    def _register(self) -> int:
        return self.store.add_model(self.model, "import", source=self.source)

    def flush(self, rows: list[tuple[ImageItem, tuple]]) -> None:
        if not rows:
            return
        if self.model_id is None:
            self.model_id = self._register()
        mid = self.model_id
        try:
            with self.store.session() as s:
                self._insert(s, mid, rows)
        except OperationalError as exc:
            raise IngestError(
                f"database {self.store.url}: cannot write ({exc.orig}); the {len(rows)} images "
                "of this chunk were not recorded. Check that the workspace is writable, then "
                "re-run the import (finished chunks are kept)."
            ) from None

    def _insert(self, s, mid: int, rows: list[tuple[ImageItem, tuple]]) -> None:
        img = db.Image
        shas = list({res[1] for _it, res in rows})
        pids = list({it.prompt_id for it, _res in rows})
        by_sha = {
            sha: (pid, seed, src)
            for sha, pid, seed, src in s.execute(
                select(img.sha256, img.prompt_id, img.seed, img.source_name).where(
                    img.model_id == mid, img.sha256.in_(shas)
                )
            )
        }
        by_key = {
            (pid, seed): src
            for pid, seed, src in s.execute(
                select(img.prompt_id, img.seed, img.source_name).where(
                    img.model_id == mid,
                    img.prompt_id.in_(pids),
                    img.seed.is_not(None),
                    img.settings_hash == "",
                )
            )
        }
        new = []
        for item, (_ok, sha, width, height, broken) in rows:
            if sha in by_sha:
                pid, seed, src = by_sha[sha]
                if pid == item.prompt_id and seed == item.seed:
                    self.report.present += 1
                else:
                    self.report.skipped.append(
                        (
                            item.name,
                            f"same pixels as {src}, already stored for model {self.model!r} "
                            f"(prompt #{pid}, seed {seed}); one image cannot belong to two "
                            "prompts of one model: remove the duplicate",
                        )
                    )
                continue
            key = (item.prompt_id, item.seed)
            if item.seed is not None and key in by_key:
                self.report.skipped.append(
                    (
                        item.name,
                        f"model {self.model!r} already has a different image for this prompt "
                        f"and seed {item.seed} ({by_key[key]}); remove one of the two",
                    )
                )
                continue
            by_sha[sha] = (item.prompt_id, item.seed, item.name)
            if item.seed is not None:
                by_key[key] = item.name
            new.append(
                {
                    "sha256": sha,
                    "model_id": mid,
                    "prompt_id": item.prompt_id,
                    "seed": item.seed,
                    "width": width,
                    "height": height,
                    "settings_hash": "",
                    "params": item.params,
                    "broken": broken,
                    "source_name": item.name,
                    "created_at": db.utcnow(),
                }
            )
            self.report.broken += broken is not None
        if new:
            s.execute(insert(db.Image), new)
        self.report.added += len(new)


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def import_images(
    store: Store,
    folder: str | Path,
    model: str,
    prompt_set: str | None = None,
    workers: int | None = None,
    progress: Callable[[int], Any] | None = None,
    on_plan: Callable[[int], Any] | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> ImageReport:
    """Import the images of ``folder`` as ``model`` (kind "import"); see the module docstring.

    ``on_plan(n)`` is called once with the number of files to process and
    ``progress(k)`` after every k processed files (for a progress bar).
    """
    folder = Path(folder)
    model = model.strip()
    if not model:
        raise IngestError("the model name is empty; give one with --model NAME.")
    report = ImageReport(str(folder), model)
    source = str(folder.resolve())
    items = plan_folder(store, folder, prompt_set, report)
    writer = _ImageWriter(store, model, source, report)
    if on_plan is not None:
        on_plan(len(items))
    workers = default_workers() if workers is None else workers
    root = str(store.workspace)
    buffer: list[tuple[ImageItem, tuple]] = []
    done = 0
    limit, display = store.settings.max_image_pixels, store.settings.display_size
    for item, result in _stored_results(items, root, limit, workers, display):
        status = result[0]
        if status == "fatal":
            writer.flush(buffer)
            raise IngestError(
                f"{item.name}: {result[1]}; the workspace must be writable. "
                f"{report.added} images were recorded before this; re-run after fixing it."
            )
        if status == "skip":
            report.skipped.append((item.name, result[1]))
        else:
            buffer.append((item, result))
            if len(buffer) >= chunk_rows:
                writer.flush(buffer)
                buffer = []
        done += 1
        if progress is not None and done % BATCH_FILES == 0:
            progress(BATCH_FILES)
    writer.flush(buffer)
    if progress is not None and done % BATCH_FILES:
        progress(done % BATCH_FILES)
    return report
