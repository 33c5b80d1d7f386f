"""Published prompt benchmarks read as they are published: PartiPrompts, DrawBench, GenAI-Bench.

None of their prompts ship with the arena; the user downloads the file (where from and
under which licence: docs/importing.md) and imports it with ``arena import-prompts``.
Each reader maps the benchmark's own labels onto a prompt's ``category`` and ``tags``,
which the leaderboard and agreement filters and slices read:

===============  =========================================  ==========  =================
format           file                                       category    tags
===============  =========================================  ==========  =================
``parti``        PartiPrompts.tsv: Prompt, Category,        Category    Challenge
                 Challenge, Note (tab-separated, unquoted)
``drawbench``    the DrawBench sheet as CSV: Prompts,       Category    (none)
                 Category
``genai-bench``  genai_image.json: {"00001": {"prompt":     basic /     the skills
                 ...}, ...} (+ genai_skills.json)           advanced
===============  =========================================  ==========  =================

A file is recognised by its header (or, for JSON, its structure) unless ``--format``
names it. Like every prompt file, a benchmark file is read and checked whole before
anything is written (:func:`arena.intake.prompts.read_prompt_file`): an error names the
file, the line (or the JSON entry) and what was expected.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

from arena.intake.reading import IngestError, decode_text, join_tags

BENCHMARK_FORMATS = ("parti", "drawbench", "genai-bench")
#: Required header columns (lower case) of the delimited benchmark files.
PARTI_COLUMNS = ("prompt", "category", "challenge")
DRAWBENCH_COLUMNS = ("prompts", "category")
#: GenAI-Bench's skills in its two groups (the evaluation code's grouping); a prompt with
#: any advanced skill is an "advanced" prompt, one with only basic skills a "basic" one.
GENAI_SKILLS = {
    "basic": ("attribute", "scene", "spatial relation", "action relation", "part relation"),
    "advanced": ("counting", "comparison", "differentiation", "negation", "universal"),
}
GENAI_GROUPS = tuple(GENAI_SKILLS)
DESCRIPTIONS = {
    "parti": "PartiPrompts TSV (category <- Category, tags <- Challenge)",
    "drawbench": "DrawBench CSV (category <- Category)",
    "genai-bench": "GenAI-Bench JSON (category <- basic/advanced, tags <- skills)",
}


def _header(text: str, delimiter: str) -> list[str]:
    first = text.split("\n", 1)[0].rstrip("\r")
    return next(csv.reader([first], delimiter=delimiter), [])


def delimiter_of(path: Path, fmt: str) -> str:
    """The column separator: by the suffix, else the benchmark's published one."""
    suffix = path.suffix.lower()
    if suffix in (".tsv", ".csv"):
        return "\t" if suffix == ".tsv" else ","
    return "\t" if fmt == "parti" else ","


def detect(path: Path, text: str) -> str | None:
    """The benchmark format of a prompt file, from its header or structure; None: a
    plain prompt file (``text``/``prompt`` column, JSONL, TXT)."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "genai-bench"
    if suffix not in (".csv", ".tsv"):
        return None
    names = {h.strip().lower() for h in _header(text, delimiter_of(path, ""))}
    if set(PARTI_COLUMNS) <= names:
        return "parti"
    if set(DRAWBENCH_COLUMNS) <= names and not names & {"text", "prompt"}:
        return "drawbench"
    return None


def read_benchmark(path: Path, text: str, fmt: str, skills: Path | None = None) -> list:
    """The :class:`arena.intake.prompts.PromptRecord` rows of a benchmark file."""
    if skills is not None and fmt != "genai-bench":
        raise IngestError(
            f"{skills}: a skills file goes with a GenAI-Bench JSON file (--format genai-bench); "
            f"{path} is read as {fmt}. Leave out --skills."
        )
    if fmt == "parti":
        return _delimited(path, text, PARTI_COLUMNS, "PartiPrompts", tags_column="challenge")
    if fmt == "drawbench":
        return _delimited(path, text, DRAWBENCH_COLUMNS, "DrawBench", tags_column=None)
    if fmt == "genai-bench":
        return _genai(path, text, skills)
    raise IngestError(f"{path}: unknown format {fmt!r}; expected one of {BENCHMARK_FORMATS}.")


def _delimited(path: Path, text: str, required, name: str, tags_column: str | None) -> list:
    from arena.intake.prompts import PromptRecord

    delimiter = delimiter_of(path, "parti" if name == "PartiPrompts" else "")
    # The published TSV is unquoted: a prompt may begin with a quote mark (a sign's
    # words), which csv's quoting would strip. CSV keeps quoting (prompts hold commas).
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    header = next(reader, [])
    keys = {h.strip().lower(): i for i, h in reversed(list(enumerate(header)))}
    missing = [c for c in required if c not in keys]
    if missing:
        raise IngestError(
            f"{path}, line 1: not a {name} file: no column(s) "
            f"{', '.join(repr(c.title()) for c in missing)} (found "
            f"{', '.join(map(repr, header)) or 'none'}); expected the published header "
            f"{', '.join(c.title() for c in required)}. Check --format, or fix the header."
        )
    text_col, cat_col = keys[required[0]], keys["category"]
    tag_col = keys[tags_column] if tags_column else None
    records = []
    for row in reader:
        line = reader.line_num
        if not row or not any(f.strip() for f in row):
            continue
        if len(row) != len(header):
            raise IngestError(
                f"{path}, line {line}: {len(row)} fields but the {name} header has "
                f"{len(header)}; each row needs one value per column"
                + (" (a tab inside a prompt splits it)." if delimiter == "\t" else ".")
            )
        records.append(
            PromptRecord(
                line=line,
                text=row[text_col],
                tags=join_tags(row[tag_col]) if tag_col is not None else "",
                category=row[cat_col].strip(),
            )
        )
    return records


_KEY = re.compile(r'"((?:[^"\\\n]|\\.)*)"\s*:')


def key_lines(text: str) -> dict[str, int]:
    """Each JSON object key of ``text`` -> the line it first appears on (for messages),
    in one pass: an entry's id comes before anything nested in it."""
    lines: dict[str, int] = {}
    line, pos = 1, 0
    for match in _KEY.finditer(text):
        line += text.count("\n", pos, match.start())
        pos = match.start()
        try:
            key = json.loads(f'"{match.group(1)}"')
        except json.JSONDecodeError:
            continue
        lines.setdefault(key, line)
    return lines


def _line_of(lines: dict[str, int], key: str) -> str:
    return f" (line {lines[key]})" if key in lines else ""


class _Pairs(list):
    """A JSON object as its (key, value) pairs, so that a repeated key is seen."""


def _load_json(path: Path, text: str, example: str):
    try:
        data = json.loads(text, object_pairs_hook=_Pairs)
    except json.JSONDecodeError as exc:
        raise IngestError(
            f"{path}, line {exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno}); "
            f"expected {example}."
        ) from None
    if isinstance(data, _Pairs):  # the top level: a repeated id would silently replace one
        seen: set[str] = set()
        for key, _value in data:
            if key in seen:
                raise IngestError(
                    f"{path}: {key!r} appears twice at the top level; ids must be unique."
                )
            seen.add(key)
    return _plain(data)


def _plain(value):
    if isinstance(value, _Pairs):
        return {k: _plain(v) for k, v in value}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


GENAI_EXAMPLE = 'one JSON object of prompt id -> entry, e.g. {"00001": {"prompt": "..."}}'


def _genai(path: Path, text: str, skills_path: Path | None) -> list:
    from arena.intake.prompts import PromptRecord

    data = _load_json(path, text, GENAI_EXAMPLE)
    if not isinstance(data, dict):
        raise IngestError(
            f"{path}: a JSON {type(data).__name__}; expected {GENAI_EXAMPLE} (GenAI-Bench's "
            "genai_image.json)."
        )
    lines = key_lines(text)
    by_index: dict[int, str] = {}
    labels: dict[str, dict[str, set[str]]] = {}
    records = []
    for key, entry in data.items():
        where = f"{path}, entry {key!r}{_line_of(lines, key)}"
        if not isinstance(entry, dict):
            raise IngestError(
                f"{where}: a JSON {type(entry).__name__}; expected an object with a 'prompt'."
            )
        prompt_key = next((k for k in entry if k.strip().lower() == "prompt"), None)
        if prompt_key is None or not isinstance(entry[prompt_key], str):
            raise IngestError(
                f"{where}: no string 'prompt' (found keys "
                f'{", ".join(map(repr, entry)) or "none"}); expected {{"prompt": "..."}}.'
            )
        labels[key] = _entry_skills(entry, where)
        if str(key).strip().isdigit():
            by_index[int(key)] = key
        records.append((key, entry[prompt_key]))
    if skills_path is not None:
        _merge_skills_file(skills_path, path, by_index, labels)
    out = []
    for key, prompt in records:
        category, tags = _category_and_tags(labels[key])
        out.append(PromptRecord(lines.get(key, 0), prompt, str(key), tags, category))
    return out


def _as_names(value, where: str, field: str) -> list[str]:
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [v.strip() for v in value if v.strip()]
    raise IngestError(
        f"{where}: {field!r} is a JSON {type(value).__name__}; expected a list of skill names."
    )


def _entry_skills(entry: dict, where: str) -> dict[str, set[str]]:
    """{"basic": {...}, "advanced": {...}, "": {...}} from an entry's own skill labels:
    ``tags``/``skills`` as {"basic": [...], "advanced": [...]} or a list, or ``basic``/
    ``advanced`` lists beside the prompt. Skills of no named group go under ""."""
    out: dict[str, set[str]] = {"basic": set(), "advanced": set(), "": set()}
    lowered = {k.strip().lower(): k for k in entry}
    for field in ("tags", "skills"):
        if field not in lowered:
            continue
        value = entry[lowered[field]]
        if isinstance(value, dict):
            for group, names in value.items():
                bucket = group.strip().lower() if group.strip().lower() in GENAI_GROUPS else ""
                out[bucket].update(_as_names(names, where, f"{field}.{group}"))
        else:
            out[""].update(_as_names(value, where, field))
    for group in GENAI_GROUPS:
        if group in lowered:
            out[group].update(_as_names(entry[lowered[group]], where, group))
    return out


def _merge_skills_file(skills_path: Path, path: Path, by_index, labels) -> None:
    """Add genai_skills.json's labels ({skill: [prompt index, ...]}) to the entries."""
    if not skills_path.is_file():
        raise IngestError(f"{skills_path}: no such file (the --skills file).")
    text = decode_text(skills_path)
    example = 'one JSON object of skill -> prompt numbers, e.g. {"counting": [3, 17]}'
    data = _load_json(skills_path, text, example)
    if not isinstance(data, dict):
        raise IngestError(f"{skills_path}: a JSON {type(data).__name__}; expected {example}.")
    lines = key_lines(text)
    for skill, indices in data.items():
        where = f"{skills_path}, skill {skill!r}{_line_of(lines, skill)}"
        if not isinstance(indices, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in indices
        ):
            raise IngestError(f"{where}: expected a list of prompt numbers such as [3, 17].")
        unknown = sorted({i for i in indices if i not in by_index})
        if unknown:
            raise IngestError(
                f"{where}: prompt number(s) {', '.join(map(str, unknown[:5]))}"
                f"{' ...' if len(unknown) > 5 else ''} are not ids of {path} (its ids run "
                f"{_id_range(by_index)}); is this the skills file of another GenAI-Bench "
                "release (527 vs 1600 prompts)?"
            )
        name = skill.strip().lower()
        for i in indices:
            entry = labels[by_index[i]]
            if name in GENAI_GROUPS:
                entry[name].add(name)  # membership of the group itself
            else:
                entry[""].add(skill.strip())


def _id_range(by_index: dict[int, str]) -> str:
    if not by_index:
        return "none: its ids are not numbers"
    return f"{min(by_index)}-{max(by_index)}"


def _category_and_tags(labels: dict[str, set[str]]) -> tuple[str, str]:
    """The prompt's category (advanced if any advanced skill, else basic if any basic
    one, else "") and its skills as tags, in GenAI-Bench's order, others after."""
    skills = (labels["basic"] | labels["advanced"] | labels[""]) - set(GENAI_GROUPS)
    known = [s for group in GENAI_GROUPS for s in GENAI_SKILLS[group]]
    lowered = {s.lower() for s in skills}
    advanced = bool(labels["advanced"]) or lowered & set(GENAI_SKILLS["advanced"])
    basic = bool(labels["basic"]) or lowered & set(GENAI_SKILLS["basic"])
    category = "advanced" if advanced else "basic" if basic else ""
    ordered = [s for s in known if s in lowered]
    ordered += sorted(s for s in skills if s.lower() not in set(known))
    return category, join_tags(ordered)
