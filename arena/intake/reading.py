"""Reading what users hand the importers: UTF-8 text, JSON lines, lenient column names.

Every error names the file and the line and says how to fix it (``IngestError``); a
report lists what it skipped with ``with_skips``. Used by the prompt importer
(``prompts``) and the image-folder layouts (``layouts``).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

TEXT_KEYS = ("text", "prompt")
ID_KEYS = ("id", "prompt_id")


class IngestError(ValueError):
    """An import that cannot go ahead; the message names the input and the fix."""


def decode_text(path: Path) -> str:
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


def join_tags(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(t).strip() for t in value if str(t).strip())
    return ", ".join(t.strip() for t in str(value).split(",") if t.strip())


def opt_str(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def first_key(keys, candidates) -> str | None:
    lowered = {k.strip().lower(): k for k in keys if k is not None}
    for c in candidates:
        if c in lowered:
            return lowered[c]
    return None


def jsonl_objects(path: Path, text: str, example: str):
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


def with_skips(head: str, skipped: list[tuple[str, str]], limit: int) -> str:
    if not skipped:
        return head
    lines = [head + ":"]
    lines += [f"  {name}: {reason}" for name, reason in skipped[:limit]]
    if len(skipped) > limit:
        counts = Counter(reason.split(";")[0].split("(")[0].strip() for _n, reason in skipped)
        lines.append(f"  ... and {len(skipped) - limit} more; by reason:")
        lines += [f"    {n:>6}  {reason}" for reason, n in counts.most_common()]
    return "\n".join(lines)


def short(text: str, n: int = 40) -> str:
    return repr(text if len(text) <= n else text[: n - 3] + "...")
