"""Send generated hostile requests to a served run and check every answer: never a 5xx, refusals in JSON.

Each request is raw HTTP/1.1 on its own connection, so nothing is normalized on the way. A seeded RNG
draws ``--requests`` of them across every route: valid ones; one query parameter of the server's own
OpenAPI spec broken (wrong type, out of range, too long, missing, an unknown id); random query strings
(booleans, fractions and huge numbers for integers, NaN, unknown and repeated names, bad escapes);
unknown paths and traversal attempts (``..``, encoded dots and slashes, NUL, unicode); wrong methods,
and tokens no method has; POST bodies with fields of the wrong type (booleans or strings for numbers,
fractions for integers, huge numbers, NaN, unknown fields); malformed JSON (truncated, NaN and
Infinity literals, deep nesting, huge literals, bytes that are not UTF-8, empty); other content types;
bodies whose framing lies (a Content-Length below or above what is sent); and 1-5 MB bodies with a
Content-Length, chunked without one, or with a lying one. One more request declares a body it never
finishes: the server must give up on it with a 408.

Without RUN a tiny run is trained first (biased MF, a few epochs on the bundled ml-latest-small, in a
temporary folder); without ``--url`` it is served here with ``deepmovie serve`` (``--rater``: paired
with a rating run), whose resident memory (VmRSS) is read before and after the requests. The report
(``--out``) gives the answers per status code and per kind of request, latency, and the memory.
Exit code 1 on any 5xx, a refusal that is not JSON, a request left unanswered, a HEAD answered with a
body, no 408 for the stalled body, a failing /health afterwards, or memory not back within 10%.

    python benchmarks/serve_fuzz.py                          # a tiny run, 1,000 requests
    python benchmarks/serve_fuzz.py RUN --rater RATER --requests 5000 --seed 1
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import json
import os
import random
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import write_report
from serve_load import health, known_users, stop, wait_healthy

from deepmovie.config import build_config
from deepmovie.experiment import run
from deepmovie.machine import describe
from deepmovie.serving.api import BODY_SECONDS

# What uvicorn's HTTP parser answers to a request it cannot parse, before the app sees anything.
PARSER_REFUSAL = b"Invalid HTTP request received."
EXTRA_ROUTES = [  # routes outside the OpenAPI spec
    ("GET", "/"),
    ("GET", "/static/app.js"),
    ("GET", "/static/style.css"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/redoc"),
]
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "PROPFIND"]
BOGUS_METHODS = ["FOO", "get", "GéT", "G ET", "POST\x00", "X" * 300]
UNKNOWN_IDS = ["0", "-1", "999999999", "1" * 40, "abc", "1.5", "1e3", " ", "\x00", "🙂", "None", "[1]", "١٢"]
BAD_INTEGERS = [
    "abc",
    "1.5",
    "1.0",
    "",
    " 10",
    "1_000",
    "+5",
    "١٠",
    "1e999",
    "NaN",
    "-Infinity",
    "0x10",
    "9" * 40,
    "9" * 5000,
    "[]",
    "true",
    "false",
]
WRONG_VALUES: list[Any] = [
    True,
    False,
    None,
    "10",
    "4.5",
    "",
    "true",
    1.5,
    1.0,
    -1,
    0,
    10**30,
    -(10**30),
    2**63,
    1e308,
    -1e308,
    5e-324,
    float("nan"),
    float("inf"),
    float("-inf"),
    [],
    [1],
    {},
    {"item": 1},
    "🙂",
    "Комедия",
    "x" * 10_000,
    "\x00",
    "\u202e1",
]
UNKNOWN_FIELDS = ["K", "ratings ", "__proto__", "constructor", "user", "rating", "", "🙂", "k\x00"]
PATH_SEGMENTS = [
    "..",
    ".",
    "%2e%2e",
    "%2E%2E",
    ".%2e",
    "..%2f",
    "%2f",
    "%5c..%5c",
    "....//",
    "static",
    "users",
    "1",
    "ratings",
    "etc",
    "passwd",
    "",
    "%00",
    "%c3%a9",
    "%f0%9f%99%82",
    "%ff",
    "index.html",
    "app.js",
    "serving.json",
    "model.pt",
    ".git",
    "config",
    "~root",
]
TRAVERSALS = [
    "/static/../../../../etc/passwd",
    "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/static/..%2f..%2f..%2fapi.py",
    "/static/..\\..\\api.py",
    "/static/%5c..%5c..%5capi.py",
    "/static/app.js%00.png",
    "/static/./app.js",
    "/static//app.js",
    "/static/",
    "/static",
    "/users/../health",
    "/users/%2e%2e/ratings",
    "/users/..%2f..%2fhealth/ratings",
    "/users//ratings",
    "/users/1/ratings/extra",
    "//etc/passwd",
    "/../serving.json",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/.git/config",
    "/docs/../openapi.json",
    "*",
    "http://example.com/health",
    "/health#fragment",
    "/é",
    "/" + "a" * 5000,
]
CONTENT_TYPES = [
    "text/plain",
    None,
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/xml",
    "application/vnd.api+json",
    "application/json; charset=utf-16",
    "application/json; charset=latin-1",
    "*/*",
    "",
    "application",
    "application/json; boundary=",
]


@dataclass(frozen=True)
class Probe:
    """One request: what is hostile about it (``kind``), the route it aims at, and its raw parts."""

    kind: str
    route: str
    method: str
    target: str  # sent as-is, UTF-8 encoded: dots and escapes are not normalized
    body: bytes | None = None
    framing: str = "length"  # "length", "chunked", or "declare:VALUE" (a Content-Length that may lie)
    content_type: str | None = "application/json"

    def encode(self) -> bytes:
        lines = [f"{self.method} {self.target} HTTP/1.1", "Host: fuzz", "Connection: close"]
        payload = b""
        if self.body is not None:
            if self.content_type is not None:
                lines.append(f"Content-Type: {self.content_type}")
            if self.framing == "chunked":
                lines.append("Transfer-Encoding: chunked")
                step = 65_536
                parts = (self.body[n : n + step] for n in range(0, len(self.body), step))
                payload = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
            else:
                declared = str(len(self.body)) if self.framing == "length" else self.framing[8:]
                lines.append(f"Content-Length: {declared}")
                payload = self.body
        return "\r\n".join(lines).encode() + b"\r\n\r\n" + payload


@dataclass(frozen=True)
class Answer:
    status: int  # 0: no answer
    headers: dict[str, str]
    body: bytes
    seconds: float


def get(host: str, port: int, path: str) -> Answer:
    return exchange(host, port, Probe("", "", "GET", path).encode(), 30)


def exchange(host: str, port: int, request: bytes, timeout: float) -> Answer:
    """Send ``request`` on a new connection and read the first answer on it."""
    began = time.perf_counter()
    received: list[bytes] = []
    with socket.create_connection((host, port), timeout=timeout) as conn:
        with contextlib.suppress(OSError):  # a server that answered (a 413) and closed: read the answer
            conn.sendall(request)
        try:
            while chunk := conn.recv(65_536):
                received.append(chunk)
        except OSError:  # reset after the answer, or a timeout
            pass
    seconds = time.perf_counter() - began
    head, _, rest = b"".join(received).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return Answer(0, {}, b"", seconds)
    headers = {
        name.strip().lower(): value.strip() for name, _, value in (x.partition(":") for x in lines[1:])
    }
    length = int(headers.get("content-length", len(rest)))
    return Answer(status, headers, rest[:length], seconds)  # a second answer after it is left out


@dataclass
class Context:
    """What the generators draw on: the routes, valid values, and the server's limits."""

    spec: dict
    user: str
    item: str
    genres: list[str]
    max_body: int
    routes: list[tuple[str, str]] = field(init=False)

    def __post_init__(self) -> None:
        self.routes = [(m.upper(), p) for p, ops in self.spec["paths"].items() for m in ops] + EXTRA_ROUTES

    def path(self, template: str) -> str:
        return template.replace("{user}", quote(self.user, safe=""))

    def params(self, method: str, template: str) -> list[dict]:
        operation = self.spec["paths"].get(template, {}).get(method.lower(), {})
        return [p for p in operation.get("parameters", []) if p["in"] == "query"]

    def plausible(self, name: str, rng: random.Random) -> str:
        """A valid value of query parameter ``name``."""
        values = {
            "user": self.user,
            "item": self.item,
            "exclude": self.item,
            "k": str(rng.randint(1, 50)),
            "limit": str(rng.randint(1, 50)),
            "offset": str(rng.randint(0, 30)),
            "q": rng.choice(["the", "star", "a", "love"]),
            "explain": rng.choice(["true", "false"]),
            "include_seen": rng.choice(["true", "false", "1", "0"]),
            "genres": rng.choice(self.genres),
            "genre": rng.choice(self.genres),
            "min_year": str(rng.randint(1900, 2000)),
            "max_year": str(rng.randint(2000, 2030)),
            "min_ratings": str(rng.randint(0, 20)),
            "max_per_genre": str(rng.randint(1, 5)),
            "diversity": str(round(rng.random(), 2)),
        }
        return values.get(name, "1")

    def valid_query(self, method: str, template: str, rng: random.Random) -> dict[str, str]:
        params = self.params(method, template)
        return {
            p["name"]: self.plausible(p["name"], rng) for p in params if p["required"] or rng.random() < 0.3
        }

    def cold_start(self, rng: random.Random) -> dict[str, Any]:
        """A valid ``POST /recommend`` body."""
        body: dict[str, Any] = {"ratings": [{"item": int(self.item), "rating": rng.choice([1, 3.5, 5])}]}
        for name, value in (("k", rng.randint(1, 20)), ("offset", rng.randint(0, 10)), ("explain", False)):
            if rng.random() < 0.4:
                body[name] = value
        if rng.random() < 0.3:
            body["genres"] = [rng.choice(self.genres)]
        return body


def target(path: str, query: dict[str, str] | list[tuple[str, str]] | str) -> str:
    text = query if isinstance(query, str) else urlencode(query, quote_via=quote)
    return f"{path}?{text}" if text else path


def junk(rng: random.Random, low: int, high: int) -> str:
    """Random text of ``low``..``high`` characters, control and non-ASCII characters included."""
    alphabet = "abcXYZ _-.,;:/?&=%+<>'\"\\\t\n\x00\x7fé漢🙂"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(low, high)))


def bad_values(schema: dict[str, Any], rng: random.Random) -> list[str]:
    """Values a query parameter's schema forbids."""
    values: list[str] = []
    for option in schema.get("anyOf", [schema]):
        kind = option.get("type")
        if kind == "integer":
            values += [*BAD_INTEGERS, "z" + junk(rng, 0, 30)]
            values += [str(option["minimum"] - rng.randint(1, 10**12))] if "minimum" in option else []
            values += [str(option["maximum"] + rng.randint(1, 10**12))] if "maximum" in option else []
        elif kind == "number":
            values += ["true", "abc", "NaN", "inf", "-inf", "1e999", "-0.5", "1.5", "", "0x1p-2"]
        elif kind == "string" and "maxLength" in option:
            values += ["x" * (option["maxLength"] + 1), "é" * (option["maxLength"] + 1)]
            values.append(junk(rng, option["maxLength"] + 1, option["maxLength"] + 300))
        elif kind == "boolean":
            values += ["maybe", "2", "", "yes please", "z" + junk(rng, 0, 20)]
        elif kind == "array":
            values += bad_values(option["items"], rng)
    return values or [junk(rng, 0, 20)]


# --- the generators: each draws one probe of its kind ----------------------------------------------


def valid(ctx: Context, rng: random.Random) -> Probe:
    method, template = rng.choice(ctx.routes)
    if method == "POST":
        return Probe("valid", f"POST {template}", "POST", template, json.dumps(ctx.cold_start(rng)).encode())
    method = rng.choice(["GET", "HEAD"])
    query = ctx.valid_query("get", template, rng)
    return Probe("valid", f"GET {template}", method, target(ctx.path(template), query))


def broken_parameter(ctx: Context, rng: random.Random) -> Probe:
    gets = [(m, p) for m, p in ctx.routes if m == "GET" and (ctx.params(m, p) or "{user}" in p)]
    _, template = rng.choice(gets)
    query = ctx.valid_query("get", template, rng)
    params = ctx.params("get", template)
    if "{user}" in template and (not params or rng.random() < 0.5):
        bad = rng.choice([*UNKNOWN_IDS, "u" + junk(rng, 0, 40), "x" * 65])
        path = template.replace("{user}", quote(bad, safe=""))
        return Probe("query: one parameter broken", f"GET {template}", "GET", target(path, query))
    param = rng.choice(params)
    choices = bad_values(param["schema"], rng)
    if param["name"] in ("user", "item", "exclude"):
        choices += UNKNOWN_IDS
    if param["required"] and rng.random() < 0.15:
        query.pop(param["name"], None)
    else:
        query[param["name"]] = rng.choice(choices)
    method = rng.choice(["GET", "GET", "HEAD"])
    return Probe("query: one parameter broken", f"GET {template}", method, target(ctx.path(template), query))


def random_query(ctx: Context, rng: random.Random) -> Probe:
    gets = [(m, p) for m, p in ctx.routes if m == "GET"]
    _, template = rng.choice(gets)
    names = [p["name"] for p in ctx.params("get", template)] + ["x", "K", "user[]", "", "🙂", "a" * 300]
    pairs = [
        (rng.choice(names), rng.choice(BAD_INTEGERS + UNKNOWN_IDS + [junk(rng, 0, 30)])) for _ in range(8)
    ]
    pairs = pairs[: rng.randint(0, 8)]
    pairs += list(ctx.valid_query("get", template, rng).items()) if rng.random() < 0.5 else []
    rng.shuffle(pairs)
    query: str | list[tuple[str, str]] = pairs
    if rng.random() < 0.25:  # text no encoder would write
        query = rng.choice(["%zz", "%", "&&&", "=", "a=b=c", "k=%00", "user=%ff%fe", "k=1&k=2&k=true"])
        query += "&" + "&".join(f"k{n}={n}" for n in range(rng.randint(0, 2000)))
    return Probe(
        "query: random", f"GET {template}", rng.choice(["GET", "HEAD"]), target(ctx.path(template), query)
    )


def hostile_path(ctx: Context, rng: random.Random) -> Probe:
    if rng.random() < 0.5:
        path = rng.choice(TRAVERSALS)
    else:
        path = "/" + "/".join(rng.choice(PATH_SEGMENTS) for _ in range(rng.randint(1, 8)))
    return Probe("path: unknown or traversal", "-", rng.choice(["GET", "GET", "HEAD", "POST"]), path)


def wrong_method(ctx: Context, rng: random.Random) -> Probe:
    method, template = rng.choice(ctx.routes)
    allowed = {m for m, p in ctx.routes if p == template} | {"HEAD"}
    if rng.random() < 0.1:
        other = rng.choice(BOGUS_METHODS)
    else:
        other = rng.choice([m for m in METHODS if m not in allowed])
    body = json.dumps(ctx.cold_start(rng)).encode() if rng.random() < 0.5 else None
    path = target(ctx.path(template), ctx.valid_query(method, template, rng))
    return Probe("method: wrong", f"{method} {template}", other, path, body)


def mutated(ctx: Context, rng: random.Random) -> Any:
    """A ``POST /recommend`` body with one to three fields of the wrong type or value, or unknown."""
    body = ctx.cold_start(rng)
    fields = list(ctx.spec["components"]["schemas"]["ColdStart"]["properties"])
    for _ in range(rng.randint(1, 3)):
        value = rng.choice(WRONG_VALUES)
        entries = body.get("ratings")
        where = rng.random()
        if where < 0.35 and isinstance(entries, list) and entries and isinstance(entries[0], dict):
            entries[0] = {**entries[0], rng.choice(["item", "rating"]): value}
        elif where < 0.8:
            body[rng.choice(fields)] = value
        elif where < 0.9:
            body[rng.choice(UNKNOWN_FIELDS)] = value
        else:
            entry = ctx.cold_start(rng)["ratings"][0]
            body["ratings"] = rng.choice([[value], [entry] * rng.choice([2, 1001]), [entry, value]])
    return body


def wrong_types(ctx: Context, rng: random.Random) -> Probe:
    body = json.dumps(mutated(ctx, rng), allow_nan=True).encode()  # NaN and Infinity as JS writes them
    return Probe("body: wrong types or fields", "POST /recommend", "POST", "/recommend", body)


def malformed_json(ctx: Context, rng: random.Random) -> Probe:
    text = json.dumps(ctx.cold_start(rng))
    depth = rng.choice([100, 1000, 10_000, 100_000])
    choice = rng.randrange(12)
    if choice == 0:
        raw = text[: rng.randrange(len(text))].encode()
    elif choice == 1:
        at = rng.randrange(len(text))
        raw = (text[:at] + rng.choice("{}[],:\"'\\x\x00") + text[at:]).encode()
    elif choice == 2:
        literal = rng.choice(["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "9" * 5000, "1" + "0" * 400])
        raw = text.replace('"rating": ', '"rating": ' + literal + ', "x": ', 1).encode()
        raw = rng.choice(
            [raw, f'{{"ratings": [{{"item": 1, "rating": {literal}}}], "k": {literal}}}'.encode()]
        )
    elif choice == 3:
        raw = b'{"ratings": ' + b"[" * depth + b"]" * depth + b"}"
    elif choice == 4:
        raw = b'{"a":' * depth + b"1" + b"}" * depth
    elif choice == 5:
        raw = rng.choice([b"", b" ", b"\n\t", b"null", b"[]", b"0", b'"x"', b"true", b"{}"])
    elif choice == 6:
        raw = (
            rng.choice([b"\xef\xbb\xbf", b"\xff\xfe", b""])
            + text.encode()
            + rng.choice([b"\xff", b"\xc3", b""])
        )
    elif choice == 7:
        raw = text.replace('"', "'").encode()
    elif choice == 8:
        raw = (text[:-1] + ", }").encode()
    elif choice == 9:
        raw = ("/* a comment */ " + text).encode()
    elif choice == 10:
        raw = (text[:-1] + ', "k": 5, "k": true}').encode()  # a repeated key: the last one counts
    else:
        raw = text.replace('"ratings"', '"\\ud800\\u0000ratings"', 1).encode()
    return Probe("body: malformed JSON", "POST /recommend", "POST", "/recommend", raw)


def content_type(ctx: Context, rng: random.Random) -> Probe:
    kind = rng.choice(CONTENT_TYPES)
    text = json.dumps(ctx.cold_start(rng) if rng.random() < 0.5 else {"genres": ["Comédie"], "ratings": []})
    encoding = "utf-16" if kind and "utf-16" in kind else "latin-1" if kind and "latin" in kind else "utf-8"
    body = text.encode(encoding, errors="replace")
    return Probe("body: content type", "POST /recommend", "POST", "/recommend", body, content_type=kind)


def lying_framing(ctx: Context, rng: random.Random) -> Probe:
    body = json.dumps(ctx.cold_start(rng)).encode()
    declared = rng.choice(
        ["chunked", str(len(body) // 2), str(len(body) - 1), "abc", "-1", "+5", f"{len(body)}, {len(body)}"]
    )
    framing = "chunked" if declared == "chunked" else "declare:" + declared
    return Probe("body: framing", "POST /recommend", "POST", "/recommend", body, framing)


def oversized(ctx: Context, rng: random.Random) -> Probe:
    size = rng.choice([ctx.max_body + 1, rng.randint(ctx.max_body, 5 * ctx.max_body)])
    filler = rng.choice([b" ", b"[", b"\xff", b'{"item": 1, "rating": 4}, '])
    body = (b'{"ratings": [' + filler * (size // len(filler) + 1))[:size]
    framing = rng.choice(["length", "chunked", "declare:100", f"declare:{10 * ctx.max_body}"])
    if framing.endswith(str(10 * ctx.max_body)):
        body = body[:1000]  # declares more than the limit, sends a little
    method, path = rng.choice([("POST", "/recommend")] * 4 + [("GET", "/health"), ("PUT", "/similar")])
    return Probe("body: 1-5 MB", f"{method} {path}", method, path, body, framing)


GENERATORS: list[tuple[Callable[[Context, random.Random], Probe], int]] = [
    (valid, 2),
    (broken_parameter, 4),
    (random_query, 3),
    (hostile_path, 3),
    (wrong_method, 2),
    (wrong_types, 4),
    (malformed_json, 3),
    (content_type, 1),
    (lying_framing, 1),
    (oversized, 2),
]


def draw(ctx: Context, rng: random.Random) -> Probe:
    functions, weights = zip(*GENERATORS, strict=True)
    return rng.choices(functions, weights)[0](ctx, rng)


def verdict(probe: Probe, answer: Answer) -> str | None:
    """Why ``answer`` is wrong, or None: a 5xx, no answer, a HEAD with a body, a refusal not in JSON.
    A refusal by uvicorn's HTTP parser is none of these: it could not tell the method, and the app
    never saw the request."""
    if answer.status == 0:
        return "no answer"
    if answer.status >= 500:
        return "5xx"
    if answer.body == PARSER_REFUSAL:
        return None
    if probe.method == "HEAD" and answer.body:
        return "HEAD answered with a body"
    if answer.status < 400:
        return None
    if answer.headers.get("content-type") != "application/json":
        return "a refusal not in JSON"
    if probe.method == "HEAD":
        return None
    try:
        detail = json.loads(answer.body)["detail"]
    except (ValueError, TypeError, KeyError):
        return "a refusal not in JSON"
    return None if detail else "a refusal without detail"


def stalled(host: str, port: int, out: dict) -> None:
    """Declare a 1,000-byte body, send 10 bytes and wait: the server must answer 408, not hold on."""
    probe = Probe("stalled body", "POST /recommend", "POST", "/recommend", b"x" * 10, "declare:1000")
    out["answer"] = exchange(host, port, probe.encode(), timeout=BODY_SECONDS + 30)


def memory(pid: int) -> dict[str, int]:
    """The process's resident (VmRSS) and peak resident (VmHWM) memory, in kB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


def tiny_run(folder: Path) -> Path:
    """A biased-MF run on the bundled ml-latest-small, a few epochs: enough to serve, quick to train."""
    params = {"optimizer": "adam", "lr": 0.02, "factors": 16, "epochs": 3, "batch_size": 4096}
    values = {"model": "biased-mf", "data": "ml-latest-small", "device": "cpu", "params": params}
    run(build_config(values), folder / "biased-mf", quiet=True)
    return folder / "biased-mf"


def fuzz(url: str, run: Path, args: argparse.Namespace, server: subprocess.Popen | None) -> dict:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    served = health(url)
    spec = json.loads(get(host, port, "/openapi.json").body)
    user = known_users(run)[0]
    history = json.loads(get(host, port, f"/users/{quote(user, safe='')}/ratings").body)
    ctx = Context(
        spec, user, str(history["ratings"][0]["item"]), served["genres"], served["limits"]["max_body"]
    )
    rng = random.Random(args.seed)
    memory_start = memory(server.pid) if server else {}
    for method, template in ctx.routes:  # every route once before the figures: caches, the thread pool
        probe = Probe("warm-up", "", "GET", ctx.path(template))
        if method == "POST":
            probe = Probe("warm-up", "", "POST", template, json.dumps(ctx.cold_start(rng)).encode())
        exchange(host, port, probe.encode(), 30)
    memory_warm = memory(server.pid) if server else {}
    stall: dict = {}
    staller = threading.Thread(target=stalled, args=(host, port, stall), daemon=True)
    staller.start()
    statuses: collections.Counter[int] = collections.Counter()
    kinds: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)
    routes: collections.Counter[str] = collections.Counter()
    reasons: collections.Counter[str] = collections.Counter()
    parser_refusals, seconds, failures = 0, [], []
    for _ in range(args.requests):
        probe = draw(ctx, rng)
        answer = exchange(host, port, probe.encode(), args.timeout)
        statuses[answer.status] += 1
        kinds[probe.kind][answer.status] += 1
        routes[probe.route] += 1
        parser_refusals += answer.body == PARSER_REFUSAL
        seconds.append(answer.seconds)
        why = verdict(probe, answer)
        if why:
            reasons[why] += 1
            body = (probe.body or b"")[:60]
            failures.append(f"{why}: {probe.method} {probe.target[:100]!r} {body!r} -> {answer.status}")
    staller.join()
    time.sleep(1)  # let the last connections close
    healthy = get(host, port, "/health").status == 200
    ms = np.asarray(seconds) * 1e3
    return {
        "served": {key: served[key] for key in ("ranker", "rater", "users", "items")},
        "requests": args.requests,
        "statuses": dict(sorted(statuses.items())),
        "kinds": {kind: dict(sorted(counts.items())) for kind, counts in sorted(kinds.items())},
        "routes": dict(sorted(routes.items())),
        "parser_refusals": parser_refusals,
        "stalled_body": stall["answer"].status,
        "stalled_seconds": round(stall["answer"].seconds, 1),
        "failures": failures,
        "reasons": dict(reasons),
        "healthy_after": healthy,
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
        "memory_start_kb": memory_start,
        "memory_warm_kb": memory_warm,
        "memory_end_kb": memory(server.pid) if server else {},
    }


def report(result: dict, command: str, load: tuple[list[float], list[float]]) -> list[str]:
    """The Markdown report of one run."""
    start, warm, end = (result[f"memory_{when}_kb"] for when in ("start", "warm", "end"))
    served, reasons = result["served"], result["reasons"]
    lines = [
        "# Hostile requests against `deepmovie serve`",
        "",
        f"`{command}`",
        "",
        f"- date: {result['date']}",
        f"- machine: {result['machine']}",
        f"- load average (1, 5, 15 min): {load[0]} at the start, {load[1]} at the end",
        f"- served: ranker {served['ranker']}, rater {served['rater']}, {served['users']:,} users, "
        f"{served['items']:,} items; seed {result['seed']}",
        "",
        "| requests | 5xx | no answer | refusals not in JSON | HEAD with a body | 408 for a stalled body "
        "| `/health` after | p50 | p99 | max |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {result['requests']:,} | {reasons.get('5xx', 0)} | {reasons.get('no answer', 0)} "
        f"| {reasons.get('a refusal not in JSON', 0) + reasons.get('a refusal without detail', 0)} "
        f"| {reasons.get('HEAD answered with a body', 0)} "
        f"| {result['stalled_body']} after {result['stalled_seconds']} s "
        f"| {200 if result['healthy_after'] else 'failed'} "
        f"| {result['p50_ms']} ms | {result['p99_ms']} ms | {result['max_ms']} ms |",
        "",
        "Latency: one request on a new connection, from connect to the whole answer, the client on the "
        "same machine.",
        "",
        "## Answers by status code",
        "",
        "| status | answers |",
        "|---|---|",
        *(f"| {status or 'none'} | {count:,} |" for status, count in result["statuses"].items()),
        "",
        f"{result['parser_refusals']} of the 400s are uvicorn's own (`text/plain`, \"Invalid HTTP request "
        'received."): requests its HTTP parser refuses before the app sees them (a method token no '
        "method has, raw non-ASCII in the target, a Content-Length that is not a number or is shorter "
        'than the body that follows). Every other refusal is the app\'s JSON `{"detail": ...}`; a 307 '
        "is FastAPI's redirect of a path with a trailing slash to the route without it.",
        "",
        "## Answers by kind of request",
        "",
        "| kind | requests | status codes |",
        "|---|---|---|",
        *(
            f"| {kind} | {sum(counts.values()):,} | {', '.join(f'{s}: {n}' for s, n in counts.items())} |"
            for kind, counts in result["kinds"].items()
        ),
        "",
        "Routes aimed at (`-`: none, an unknown path): "
        + ", ".join(f"`{route}` {n}" for route, n in result["routes"].items())
        + ".",
        "",
        "## Server memory (VmRSS)",
        "",
    ]
    if end:
        change, since_start = (end["VmRSS"] / x["VmRSS"] - 1 for x in (warm, start))
        lines += [
            "| once healthy | after one request per route | peak (VmHWM) | after the run | change |",
            "|---|---|---|---|---|",
            f"| {start['VmRSS'] / 1024:.1f} MiB | {warm['VmRSS'] / 1024:.1f} MiB "
            f"| {end['VmHWM'] / 1024:.1f} MiB | {end['VmRSS'] / 1024:.1f} MiB "
            f"| {change:+.1%} ({since_start:+.1%} from once healthy) |",
            "",
            "The change is from the figure after one request per route (the first requests fill caches and "
            "start the thread pool), to after the run; at most +10% passes.",
        ]
    else:
        lines.append("Not read: the server was not started by this script (`--url`).")
    if result["failures"]:
        lines += ["", "## Failures", "", *(f"- `{f}`" for f in result["failures"][:50])]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, nargs="?", help="the run served; default: train a tiny one")
    parser.add_argument("--rater", type=Path, help="a rating run paired with RUN (serve --ranker --rater)")
    parser.add_argument("--url", help="a running server of RUN; default: start `deepmovie serve` here")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for one answer")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "serve-fuzz.md")
    parser.add_argument("--json-out", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args()
    if args.url and args.run is None:
        parser.error("--url needs RUN, the run it serves (its user ids are read from it)")
    command = shlex.join(["python", *sys.argv])
    load_start = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="serve-fuzz-") as scratch:
        run = args.run or tiny_run(Path(scratch))
        server = None
        url = args.url
        if url is None:
            url = f"http://127.0.0.1:{args.port}"
            command_line = [sys.executable, "-m", "deepmovie", "serve", "--port", str(args.port)]
            command_line += ["--ranker", str(run), "--rater", str(args.rater)] if args.rater else [str(run)]
            server = subprocess.Popen(command_line, start_new_session=True)
            wait_healthy(url, server)
        try:
            result = fuzz(url.rstrip("/"), run, args, server)
        finally:
            if server is not None:
                stop(server)
    load_end = [round(x, 2) for x in os.getloadavg()]
    result["date"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    result["machine"] = describe()
    result["seed"] = args.seed
    result["load_average"] = {"start": load_start, "end": load_end}
    write_report(args.out, report(result, command, (load_start, load_end)))
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    memory_ok = True
    if result["memory_end_kb"]:
        memory_ok = result["memory_end_kb"]["VmRSS"] <= 1.1 * result["memory_warm_kb"]["VmRSS"]
    stalled_ok = result["stalled_body"] == 408
    sys.exit(0 if not result["failures"] and result["healthy_after"] and memory_ok and stalled_ok else 1)


if __name__ == "__main__":
    main()
