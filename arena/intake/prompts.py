"""Prompt files into a prompt set.

Prompts come from CSV, TSV, JSONL or TXT files (one prompt per row; optional id,
tags and category), or from a published benchmark file as it is published
(PartiPrompts, DrawBench, GenAI-Bench: :mod:`arena.intake.benchmarks`). A prompt file
is read and checked completely before anything is written: a missing column, a bad
line or bad encoding refuses the whole file with an error naming the file and the
line. Re-running an import adds only what is new; an id already in the set with
another text is skipped and reported (ids never change meaning). A set can be marked
held out in the same transaction.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from arena.intake.benchmarks import BENCHMARK_FORMATS, DESCRIPTIONS, detect, read_benchmark
from arena.intake.reading import (
    ID_KEYS,
    TEXT_KEYS,
    IngestError,
    decode_text,
    first_key,
    join_tags,
    jsonl_objects,
    opt_str,
    short,
    with_skips,
)
from arena.storage.store import PromptRow

if TYPE_CHECKING:
    from arena.storage.store import Store

PROMPT_SUFFIXES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".txt": "txt",
    ".json": "json",  # GenAI-Bench's genai_image.json
}
#: --format: "auto" recognises a benchmark file by its header or structure.
FORMATS = ("auto", *BENCHMARK_FORMATS)


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
    format: str = ""  # the benchmark format read ("" for a plain prompt file)
    held_out: bool | None = None  # what the import set the set's flag to (None: untouched)

    def summary(self, limit: int = 20) -> str:
        head = (
            f"{self.file} -> prompt set {self.prompt_set!r}: added {self.added}, "
            f"already present {self.present}, skipped {len(self.skipped)}"
        )
        if self.format:
            head = f"{head} [read as {DESCRIPTIONS[self.format]}]"
        if self.held_out is not None:
            head += f"; the set is {'held out' if self.held_out else 'not held out'}"
        return with_skips(head, self.skipped, limit)


def _read_delimited(path: Path, text: str, delimiter: str) -> list[PromptRecord]:
    reader = csv.DictReader(
        io.StringIO(text, newline=""), delimiter=delimiter, skipinitialspace=True
    )
    header = reader.fieldnames or []
    text_key = first_key(header, TEXT_KEYS)
    if text_key is None:
        raise IngestError(
            f"{path}, line 1: no 'text' column (found {', '.join(map(repr, header)) or 'none'}); "
            "expected a header row with a 'text' (or 'prompt') column and optionally 'id', "
            "'tags' and 'category'. Add the header row or rename the column (a benchmark "
            "file is recognised by its published header -- PartiPrompts: Prompt, Category, "
            "Challenge; DrawBench: Prompts, Category -- or named with --format)."
        )
    id_key = first_key(header, ID_KEYS)
    tags_key = first_key(header, ("tags",))
    cat_key = first_key(header, ("category",))
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
                external_id=opt_str(row.get(id_key)) if id_key else None,
                tags=join_tags(row.get(tags_key)) if tags_key else "",
                category=(row.get(cat_key) or "").strip() if cat_key else "",
            )
        )
    return records


def _read_jsonl(path: Path, text: str) -> list[PromptRecord]:
    records = []
    example = '{"text": "1girl, red hair", "id": "p1", "tags": [...], "category": "..."}'
    for line_no, obj in jsonl_objects(path, text, example):
        text_key = first_key(obj.keys(), TEXT_KEYS)
        if text_key is None or not isinstance(obj[text_key], str):
            raise IngestError(
                f"{path}, line {line_no}: no string 'text' (or 'prompt') field (found keys "
                f'{", ".join(map(repr, obj)) or "none"}); add the prompt text as "text".'
            )
        id_key = first_key(obj.keys(), ID_KEYS)
        records.append(
            PromptRecord(
                line=line_no,
                text=obj[text_key],
                external_id=opt_str(obj.get(id_key)) if id_key else None,
                tags=join_tags(obj.get("tags")),
                category=opt_str(obj.get("category")) or "",
            )
        )
    return records


def _read_txt(text: str) -> list[PromptRecord]:
    return [
        PromptRecord(line=n, text=line)
        for n, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]


def prompt_file_format(path: str | Path, fmt: str = "auto") -> str:
    """The benchmark format ``path`` is read as ("" for a plain prompt file): ``fmt``
    when it names one, else what its header or structure says."""
    path = Path(path)
    if fmt not in FORMATS:
        raise IngestError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}.")
    if fmt != "auto":
        return fmt
    return detect(path, decode_text(path)) or ""


def read_prompt_file(
    path: str | Path, max_chars: int = 2000, fmt: str = "auto", skills: str | Path | None = None
) -> list[PromptRecord]:
    """Read and check every prompt of ``path``; raise IngestError naming the line if any is bad.

    A prompt without an id gets its 1-based position among the file's prompts,
    so re-importing the same file finds the same ids. ``fmt`` ("auto", or a benchmark
    of :data:`arena.intake.benchmarks.BENCHMARK_FORMATS`) says how to read it;
    ``skills`` is GenAI-Bench's genai_skills.json for a GenAI-Bench file.
    """
    path = Path(path)
    kind = PROMPT_SUFFIXES.get(path.suffix.lower())
    if fmt not in FORMATS:
        raise IngestError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}.")
    if kind is None and fmt == "auto":
        raise IngestError(
            f"{path}: unknown prompt file type {path.suffix!r}; expected .csv, .tsv, .jsonl, "
            ".txt (one prompt per line) or a benchmark's .json, or name the benchmark with "
            "--format."
        )
    if not path.is_file():
        raise IngestError(f"{path}: no such file.")
    text = decode_text(path)
    benchmark = fmt if fmt != "auto" else detect(path, text)
    if benchmark:
        records = read_benchmark(path, text, benchmark, Path(skills) if skills else None)
    elif skills is not None:
        raise IngestError(
            f"{skills}: a skills file goes with a GenAI-Bench JSON file; {path} is a plain "
            "prompt file. Leave out --skills or add --format genai-bench."
        )
    elif kind in ("csv", "tsv"):
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
    store: Store,
    path: str | Path,
    prompt_set: str,
    category: str | None = None,
    fmt: str = "auto",
    skills: str | Path | None = None,
    held_out: bool | None = None,
) -> PromptReport:
    """Add the prompts of ``path`` to ``prompt_set``; prompts already there are left alone.

    ``category`` is used for rows that have none. A prompt id already in the set
    with a different text is skipped and reported (ids never change meaning).
    ``fmt`` and ``skills`` are :func:`read_prompt_file`'s; ``held_out`` True/False marks
    or unmarks the set held out in the same transaction as the prompts (None: as it is).
    """
    prompt_set = prompt_set.strip()
    if not prompt_set:
        raise IngestError("the prompt set name is empty; give one with --set NAME.")
    records = read_prompt_file(path, store.settings.max_prompt_chars, fmt, skills)
    report = PromptReport(str(path), prompt_set, format=prompt_file_format(path, fmt))
    report.held_out = held_out
    rows = [
        PromptRow(rec.text, rec.external_id, rec.tags, rec.category or (category or ""))
        for rec in records
    ]
    existing = store.merge_prompts(prompt_set, rows, held_out=held_out)
    for rec in records:
        old = existing.get(rec.external_id)
        if old is None:
            report.added += 1
        elif old == rec.text:
            report.present += 1
        else:
            report.skipped.append(
                (
                    f"line {rec.line}",
                    f"prompt id {rec.external_id!r} is already in set {prompt_set!r} "
                    f"with another text ({short(old)}); give this prompt a new id or "
                    "import it into another --set",
                )
            )
    return report
