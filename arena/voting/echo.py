"""Client input quoted in messages and logs, bounded.

A refusal names the value it refuses (``rater id 'abc' is not valid``), but the
value comes from the client and can be megabytes long: echoed whole it makes a
response and a log line as large as the request (a 30 MB rater id once gave a
750 MB log). :func:`echo` is the ``!r`` of such messages, cut to a few dozen
characters.
"""

from __future__ import annotations

import reprlib

ECHO_CHARS = 40  # characters of client input shown in a message

_short = reprlib.Repr()
_short.maxstring = _short.maxother = ECHO_CHARS
_short.maxlevel, _short.maxlist, _short.maxtuple, _short.maxdict = 2, 4, 4, 4


def echo(value: object, limit: int = ECHO_CHARS) -> str:
    """``repr(value)`` for a message: at most ``limit`` characters of it, then ``…``.

    Strings are cut before ``repr`` (never a repr of megabytes); other values go
    through :mod:`reprlib`, which bounds nested containers too.
    """
    if isinstance(value, str):
        return repr(value[:limit]) + ("…" if len(value) > limit else "")
    text = _short.repr(value)
    return text if len(text) <= limit else text[:limit] + "…"
