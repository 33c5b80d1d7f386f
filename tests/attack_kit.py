"""Tools of the attack suite (tests/test_attacks_*.py): a raw-HTTP client of the public API
that can speak as any client address, a recorder of everything a client sees before it
votes, the ground truth of served battles from the database, a reader of JPEG headers, and
the statistics that decide whether an observable feature predicts a label better than
chance.

The client talks to the real server the way a bot would: ``POST /gradio_api/call/<name>``
then the event stream ``GET /gradio_api/call/<name>/<event_id>`` (httpx, one keep-alive
connection), timing both and keeping every response header. ``X-Forwarded-For`` is sent
only to 127.0.0.1 (the test server); the server believes it only when 127.0.0.1 is one
of its ``trusted_proxies`` (``PROXY``).
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import time
from dataclasses import dataclass, field

import httpx
import numpy as np
from PIL import Image
from scipy import stats
from sqlalchemy import select

from arena.storage import db

# Headers that may differ between two responses without telling anything: the clock.
CLOCK_HEADERS = {"date"}
# How the suite runs the app: the vote tab only, with the test client's address trusted.
VOTE_TAB = ("arena.ui.vote_tab",)
PROXY = "127.0.0.1"  # the test client's own address, made a trusted proxy
DISPLAY = "160x160"  # the display size of the scans (side channels, gold checks)


class Refused(Exception):
    """The server refused a call: ``reason`` is the machine-readable prefix of its message."""

    def __init__(self, message: str):
        super().__init__(message)
        self.reason = message.split(":", 1)[0].strip()


@dataclass
class Reply:
    """One API call: its value, the wall time of both requests, and what else came back."""

    value: object
    seconds: float
    join_headers: tuple
    stream_headers: tuple
    join_body: bytes
    stream_body: bytes


def headers_of(response: httpx.Response, drop: set[str] = CLOCK_HEADERS) -> tuple:
    """Every response header as (name, value) pairs in the order sent, ``drop`` left out."""
    return tuple((k.lower(), v) for k, v in response.headers.multi_items() if k.lower() not in drop)


@dataclass
class Api:
    """The public API (``/rater``, ``/battle``, ``/vote``) as one client address."""

    http: httpx.Client
    address: str | None = None  # sent as X-Forwarded-For (the server may ignore it)
    calls: list[Reply] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Forwarded-For": self.address} if self.address else {}

    def call(self, name: str, *data) -> Reply:
        t0 = time.perf_counter()
        joined = self.http.post(
            f"gradio_api/call/{name}", json={"data": list(data)}, headers=self.headers
        )
        assert joined.status_code == 200, (name, joined.status_code, joined.text)
        event = joined.json()["event_id"]
        stream = self.http.get(f"gradio_api/call/{name}/{event}", headers=self.headers)
        seconds = time.perf_counter() - t0
        assert stream.status_code == 200, (name, stream.status_code, stream.text)
        kind, payload = _last_event(stream.text)
        if kind == "error":
            raise Refused(str(json.loads(payload).get("error") if payload else payload))
        assert kind == "complete", (name, stream.text)
        reply = Reply(
            json.loads(payload)[0],
            seconds,
            headers_of(joined),
            headers_of(stream),
            joined.content,
            stream.content,
        )
        self.calls.append(reply)
        return reply

    def rater(self) -> str:
        return self.call("rater").value["rater_id"]

    def battle(self, rater_id: str) -> dict:
        return self.call("battle", rater_id).value

    def vote(self, token: str, rater_id: str, outcome: str, decision_ms=3000) -> dict:
        return self.call("vote", token, rater_id, outcome, decision_ms).value

    def get(self, path: str) -> tuple[httpx.Response, float]:
        """GET a path of the app (an image URL as the page would), and its wall time."""
        t0 = time.perf_counter()
        response = self.http.get(path, headers=self.headers)
        return response, time.perf_counter() - t0


def _last_event(text: str) -> tuple[str, str]:
    """(event, data) of the last event of a Gradio call stream (heartbeats skipped)."""
    kind, data = "", ""
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if lines.get("event") in ("complete", "error"):
            kind, data = lines["event"], lines.get("data", "")
    return kind, data


def refusal(call, *args) -> str:
    """The reason of a call that must be refused (AssertionError if it went through)."""
    try:
        call(*args)
    except Refused as exc:
        return exc.reason
    raise AssertionError(f"{getattr(call, '__name__', call)}{args} was not refused")


# -- JPEG and PNG headers ----------------------------------------------------------------------
def jpeg_segments(data: bytes) -> list[tuple[int, int]]:
    """(marker, segment length) of every segment of a baseline JPEG up to its start of scan."""
    if data[:2] != b"\xff\xd8":
        return [(-1, len(data))]  # not a JPEG at all
    pos, out = 2, [(0xD8, 0)]
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        kind = data[pos + 1]
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        out.append((kind, length))
        pos += 2 + length
        if kind == 0xDA:
            break
    return out


def jpeg_header(data: bytes) -> bytes:
    """Every byte before the entropy-coded data (tables, frame, scan header)."""
    return data[: 2 + sum(2 + length for _, length in jpeg_segments(data)[1:])]


def png_layout(data: bytes) -> dict:
    """What a stored original PNG shows without decoding: size, zlib header, chunk layout."""
    pos, chunks = 8, []
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunks.append((data[pos + 4 : pos + 8], pos + 8, length))
        pos += 12 + length
    width, height = struct.unpack(">II", data[16:24])
    idat = [(start, length) for kind, start, length in chunks if kind == b"IDAT"]
    first = data[idat[0][0] : idat[0][0] + 2]
    return {
        "width": width,
        "height": height,
        "zlib_header": first.hex(),
        "idat_chunks": len(idat),
        "first_deflate_byte": data[idat[0][0] + 2] if len(first) == 2 else -1,
    }


# -- statistics ---------------------------------------------------------------------------------
def chance_bound(n: int, majority: float, alpha: float) -> float:
    """The accuracy a classifier guessing the majority class reaches with probability at most
    ``alpha``: the (1 - alpha) quantile of Binomial(n, majority) / n."""
    return float(stats.binom.ppf(1.0 - alpha, n, majority)) / n


def loo_knn_accuracy(x, labels, k: int = 7) -> float:
    """Leave-one-out accuracy of k-nearest-neighbours on z-scored features (ties: nearer)."""
    x = np.asarray(x, dtype=float)
    x = x.reshape(len(x), -1)
    spread = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    y = np.asarray(labels)
    classes, codes = np.unique(y, return_inverse=True)
    distance = ((x[:, None, :] - x[None, :, :]) ** 2).sum(axis=2)
    np.fill_diagonal(distance, np.inf)
    # ties in distance broken at random (fixed seed), so equal values carry no order
    jitter = np.random.default_rng(0).random(distance.shape) * 1e-9
    order = np.argsort(distance + jitter, axis=1)[:, :k]
    correct = 0
    for i, neighbours in enumerate(order):
        weights = np.zeros(len(classes))
        for rank, j in enumerate(neighbours):
            weights[codes[j]] += 1.0 + 1e-6 * (k - rank)  # a tie goes to the nearer class
        correct += int(np.argmax(weights) == codes[i])
    return correct / len(y)


def loo_lookup_accuracy(values, labels) -> float:
    """Leave-one-out accuracy of the best classifier of one categorical feature: predict
    the most frequent label among the *other* samples with the same value (the overall
    most frequent label for a value seen once)."""
    values = [repr(v) for v in values]
    y = np.asarray(labels)
    overall = {c: int((y == c).sum()) for c in np.unique(y)}
    table: dict[str, dict] = {}
    for v, c in zip(values, y, strict=True):
        table.setdefault(v, {}).setdefault(c, 0)
        table[v][c] += 1
    correct = 0
    for v, c in zip(values, y, strict=True):
        counts = dict(table[v])
        counts[c] -= 1
        if sum(counts.values()) == 0:
            counts = dict(overall)
            counts[c] -= 1
        best = max(counts.items(), key=lambda kv: (kv[1], str(kv[0])))[0]
        correct += int(best == c)
    return correct / len(y)


def kruskal_p(values, labels) -> float:
    """Kruskal-Wallis p-value of ``values`` across the groups of ``labels`` (1 if constant)."""
    values, y = np.asarray(values, dtype=float), np.asarray(labels)
    groups = [values[y == c] for c in np.unique(y)]
    if len(groups) < 2 or np.ptp(values) == 0:
        return 1.0
    return float(stats.kruskal(*groups).pvalue)


@dataclass
class Verdict:
    """How well one feature predicts the label, and whether that is more than chance."""

    feature: str
    kind: str  # "categorical" or "numeric"
    n: int
    accuracy: float  # leave-one-out
    bound: float  # the chance bound of the accuracy at the per-test level ``alpha``
    alpha: float
    distinct: int | None = None  # categorical: how many values were seen
    p: float | None = None  # numeric: Kruskal-Wallis

    @property
    def leaks(self) -> bool:
        if self.kind == "categorical":
            return self.distinct != 1
        return self.accuracy > self.bound or self.p < self.alpha

    def line(self) -> str:
        extra = f"distinct={self.distinct}" if self.kind == "categorical" else f"KW p={self.p:.2g}"
        return (
            f"  {self.feature:<34} n={self.n:<4} accuracy={self.accuracy:.3f} "
            f"(chance bound {self.bound:.3f}) {extra}"
        )


def scan(
    categorical: dict, numeric: dict, labels, groups=None, family_alpha: float = 1e-3
) -> list[Verdict]:
    """A verdict per feature.

    Categorical features leak unless they take one value over all samples (then the best
    any classifier can do is the majority class); their accuracy is a leave-one-out lookup
    table's. Numeric ones (1-D, or 2-D: one row per sample) leak if a Kruskal-Wallis test
    rejects, or if a leave-one-out kNN classifier beats the chance bound: the
    (1 - alpha) quantile of Binomial(n, share of the largest class) / n. ``alpha`` is
    ``family_alpha`` over the number of tests (Bonferroni), so an honest scan reports a
    leak with probability at most ``family_alpha``.

    ``groups`` (one key per sample, e.g. the image it shows) makes the numeric tests count
    each group once, by its mean: an image served five times is one image, not five
    independent samples (its bytes repeat exactly, and a classifier would otherwise find
    the image's other servings as its nearest neighbours).
    """
    y = np.asarray(labels)
    tests = max(1, len(categorical) + 2 * len(numeric))
    alpha = family_alpha / tests

    def bound_of(labels_) -> float:
        majority = max(float((labels_ == c).mean()) for c in np.unique(labels_))
        return chance_bound(len(labels_), majority, alpha)

    out = []
    bound = bound_of(y)
    majority = max(float((y == c).mean()) for c in np.unique(y))
    for name, values in categorical.items():
        distinct = len({repr(v) for v in values})
        acc = majority if distinct == 1 else loo_lookup_accuracy(values, y)
        out.append(Verdict(name, "categorical", len(y), acc, bound, alpha, distinct=distinct))
    means, y_num = _group_means(groups, y)
    bound = bound_of(y_num)
    for name, values in numeric.items():
        values = means(np.asarray(values, dtype=float))
        if values.ndim == 1:
            p = kruskal_p(values, y_num)
        else:  # the smallest p over the columns, Bonferroni-corrected over them
            p = min(1.0, values.shape[1] * min(kruskal_p(col, y_num) for col in values.T))
        acc = loo_knn_accuracy(values, y_num)
        out.append(Verdict(name, "numeric", len(y_num), acc, bound, alpha, p=p))
    return out


def _group_means(groups, y):
    """(function averaging a per-sample array over ``groups``, the label of each group)."""
    if groups is None:
        return (lambda values: values), y
    keys = list(dict.fromkeys(groups))
    index = np.array([keys.index(g) for g in groups])
    label_of: dict = {}
    for g, label in zip(groups, y, strict=True):
        assert label_of.setdefault(g, label) == label, f"group {g!r} has two labels"
    counts = np.bincount(index, minlength=len(keys)).astype(float)

    def means(values):
        flat = values.reshape(len(values), -1)
        sums = np.zeros((len(keys), flat.shape[1]))
        np.add.at(sums, index, flat)
        out = sums / counts[:, None]
        return out[:, 0] if values.ndim == 1 else out

    return means, np.asarray([label_of[g] for g in keys])


def report(title: str, verdicts: list[Verdict]) -> str:
    return "\n".join([title, *(v.line() for v in verdicts)])


# -- what a client saw, and the truth behind it ---------------------------------------------
def battle_truth(store, tokens) -> dict[str, dict]:
    """Per battle token: kind, the image id, sha256 and model of each side, the handles."""
    b, i, m = db.Battle.__table__, db.Image.__table__, db.Model.__table__
    with store.engine.connect() as conn:
        images = {
            row.id: (row.sha256, row.name)
            for row in conn.execute(select(i.c.id, i.c.sha256, m.c.name).join(m))
        }
        rows = conn.execute(
            select(
                b.c.token,
                b.c.kind,
                b.c.left_image_id,
                b.c.right_image_id,
                b.c.left_handle,
                b.c.right_handle,
            ).where(b.c.token.in_(list(tokens)))
        ).all()
    out = {}
    for token, kind, left, right, left_handle, right_handle in rows:
        out[token] = {
            "kind": kind,
            "left": {"image": left, "sha": images[left][0], "model": images[left][1]},
            "right": {"image": right, "sha": images[right][0], "model": images[right][1]},
            "handles": (left_handle, right_handle),
        }
    return out


def url_features(url: str) -> list[float]:
    """Character classes of an image URL's handle: digits, upper, lower, '-', '_', first."""
    handle = url.rsplit("/", 1)[-1]
    return [
        sum(c.isdigit() for c in handle),
        sum(c.isupper() for c in handle),
        sum(c.islower() for c in handle),
        handle.count("-"),
        handle.count("_"),
        ord(handle[0]) if handle else 0,
    ]


def url_shape(url: str) -> str:
    """The URL with every handle character replaced by its class: what a regex would see."""
    prefix, _, handle = url.rpartition("/")
    return prefix + "/" + "".join("x" for _ in handle) + f"[{len(url)}]"


class Observed:
    """Everything a client saw before voting, per battle and per image."""

    def __init__(self):
        self.battles: list[dict] = []
        self.images: list[dict] = []

    def serve(self, api: Api, rater: str) -> dict:
        reply = api.call("battle", rater)
        battle = dict(
            token=reply.value["token"],
            seconds=reply.seconds,
            join_headers=reply.join_headers,
            stream_headers=reply.stream_headers,
            join_length=len(reply.join_body),
            stream_length=len(reply.stream_body),
            keys=tuple(sorted(reply.value)),
        )
        self.battles.append(battle)
        for side in ("left", "right"):
            url = reply.value[f"{side}_image"]
            response, seconds = api.get(url)
            assert response.status_code == 200, (url, response.status_code)
            data = response.content
            with Image.open(io.BytesIO(data)) as img:
                size, fmt, info = img.size, img.format, tuple(sorted(img.info))
            self.images.append(
                dict(
                    token=battle["token"],
                    side=side,
                    url=url,
                    seconds=seconds,
                    headers=headers_of(response, {"date", "content-length"}),
                    all_headers=headers_of(response),
                    length=len(data),
                    content_length=int(response.headers["content-length"]),
                    segments=tuple(jpeg_segments(data)),
                    header_bytes=hashlib.sha256(jpeg_header(data)).hexdigest(),
                    size=size,
                    format=fmt,
                    info=info,
                    sha=hashlib.sha256(data).hexdigest(),
                )
            )
        return reply.value

    def image_features(self):
        ims = self.images
        categorical = {
            "image headers": [i["headers"] for i in ims],
            "url shape": [url_shape(i["url"]) for i in ims],
            "natural size": [i["size"] for i in ims],
            "format and info keys": [(i["format"], i["info"]) for i in ims],
            "jpeg segment layout": [i["segments"] for i in ims],
            "jpeg header bytes": [i["header_bytes"] for i in ims],
        }
        numeric = {
            "body size": [i["length"] for i in ims],
            "image GET time": [i["seconds"] for i in ims],
            "url characters": [url_features(i["url"]) for i in ims],
        }
        return categorical, numeric

    def battle_features(self):
        bs = self.battles
        categorical = {
            "/battle join headers": [b["join_headers"] for b in bs],
            "/battle stream headers": [b["stream_headers"] for b in bs],
            "/battle join body length": [b["join_length"] for b in bs],
            "/battle keys": [b["keys"] for b in bs],
        }
        numeric = {
            "/battle time": [b["seconds"] for b in bs],
            "/battle stream length": [b["stream_length"] for b in bs],
        }
        return categorical, numeric


def assert_no_leak(title: str, verdicts) -> str:
    text = report(title, verdicts)
    print(text)
    leaks = [v.line() for v in verdicts if v.leaks]
    assert not leaks, f"{title}: these features predict the label:\n" + "\n".join(leaks)
    return text
