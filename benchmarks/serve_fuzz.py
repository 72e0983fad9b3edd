"""Send generated malformed requests to a served run and count the answers: only 4xx may come back.

The requests are derived from the server's own OpenAPI spec: for every operation, one parameter at a
time is given a value its schema forbids (wrong type, out of range, too long, missing), or an id the
model cannot know, while the others stay valid; POST bodies are broken the same way and as raw bytes
(not JSON, NaN, deep nesting). Seeded random variants of each kind widen the pool; a shuffle of it,
cycled, makes ``--requests`` requests.
Exit code 1 on any 5xx, 2xx, or lost connection, or if /health fails afterwards.

    python benchmarks/serve_fuzz.py RUN --requests 1000
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from serve_load import known_users, wait_healthy

VALID = {"user": None, "item": "1", "k": "10", "q": "star", "limit": "5"}  # user: filled from the run
UNKNOWN_IDS = ["0", "-1", "999999999", "1" * 40, "abc", "1.5", "1e3", " ", "%00", "🙂", "None", "[1]"]
BAD_INTEGERS = ["abc", "1.5", "", "1e999", "NaN", "-Infinity", "0x10", "9" * 40, "[]", "true"]
BAD_BODIES: list[bytes] = [
    b"",
    b"not json",
    b"{",
    b"[]",
    b"null",
    b'{"ratings": [{"item": 1, "rating": NaN}]}',
    b'{"ratings": [{"item": 1, "rating": Infinity}]}',
    b'{"ratings": [{"item": 1, "rating": 1e999}]}',
    b'{"ratings": ' + b"[" * 2000 + b"]" * 2000 + b"}",
    b'{"ratings": [{"item": 1, "rating": 5}], "k": 1e400}',
    b"\xff\xfe\x00garbage",
]


def junk(rng: random.Random, low: int, high: int) -> str:
    """Random text of ``low``..``high`` characters, control and non-ASCII characters included."""
    alphabet = "abcXYZ _-.,;:/?&=%+<>'\"\\\t\n\x00\x7fé漢🙂"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(low, high)))


def bad_values(schema: dict[str, Any], rng: random.Random, variants: int) -> list[str | None]:
    """Values a parameter's schema forbids (None: leave the parameter out): fixed ones, then
    ``variants`` random ones of each kind."""
    options = schema.get("anyOf", [schema])
    types = {o.get("type") for o in options}
    values: list[str | None] = []
    for option in options:
        if option.get("type") == "integer":
            values += BAD_INTEGERS + ["z" + junk(rng, 0, 30) for _ in range(variants)]
            if "minimum" in option:
                values += [str(option["minimum"] - rng.randint(1, 10**12)) for _ in range(variants)]
            if "maximum" in option:
                values += [str(option["maximum"] + rng.randint(1, 10**12)) for _ in range(variants)]
        elif option.get("type") == "string" and "maxLength" in option:
            values += ["x" * (option["maxLength"] + 1), "é" * (option["maxLength"] + 1)]
            values += [junk(rng, option["maxLength"] + 1, option["maxLength"] + 300) for _ in range(variants)]
        elif option.get("type") == "boolean":
            values += ["maybe", "2", "", "yes please"] + ["z" + junk(rng, 0, 20) for _ in range(variants)]
    if "null" not in types and schema.get("minLength"):
        values.append("")
    return values


def query_requests(
    spec: dict, valid: dict[str, str], rng: random.Random, variants: int
) -> list[tuple[str, str, dict | None, bytes | None]]:
    """(method, path, query, body) for every GET operation, one broken parameter each."""
    pool = []
    for path, operations in spec["paths"].items():
        operation = operations.get("get")
        if operation is None:
            continue
        params = operation.get("parameters", [])
        base = {p["name"]: valid[p["name"]] for p in params if p["required"] and p["in"] == "query"}
        path_params = [p for p in params if p["in"] == "path"]
        for param in params:
            broken = bad_values(param["schema"], rng, variants)
            if param["required"]:
                broken.append(None)
            if param["name"] in ("user", "item"):
                broken += UNKNOWN_IDS + ["u" + junk(rng, 0, 40) for _ in range(variants)]
            for value in broken:
                if param["in"] == "path":
                    pool.append(
                        (
                            "GET",
                            path.replace("{" + param["name"] + "}", quote(value or "", safe="")),
                            base,
                            None,
                        )
                    )
                    continue
                query = dict(base)
                if value is None:
                    query.pop(param["name"], None)
                else:
                    query[param["name"]] = value
                concrete = path
                for p in path_params:
                    concrete = concrete.replace("{" + p["name"] + "}", valid[p["name"]])
                pool.append(("GET", concrete, query, None))
    return pool


def body_requests() -> list[tuple[str, str, dict | None, bytes | None]]:
    """Broken cold-start bodies: fields of the wrong type or range, unknown or repeated items."""
    good = {"item": 1, "rating": 4}
    bodies: list[Any] = [
        {},
        {"ratings": []},
        {"ratings": None},
        {"ratings": "1:5"},
        {"ratings": [good] * 1001},
        {"ratings": [good, good]},
        {"ratings": [{"item": 1}]},
        {"ratings": [{"rating": 5}]},
        {"ratings": [{"item": None, "rating": 5}]},
        {"ratings": [{"item": [1], "rating": 5}]},
        {"ratings": [{"item": 1, "rating": "five"}]},
        {"ratings": [{"item": 1, "rating": 50}]},
        {"ratings": [{"item": 1, "rating": -3}]},
        {"ratings": [{"item": 999999999, "rating": 4}]},
        {"ratings": [{"item": "x" * 65, "rating": 4}]},
        {"ratings": [{"item": 2**70, "rating": 4}]},
        {"ratings": [good], "k": 0},
        {"ratings": [good], "k": 101},
        {"ratings": [good], "k": "ten"},
        {"ratings": [good], "genre": "No Such Genre"},
        {"ratings": [good], "genre": "x" * 65},
        {"ratings": [good], "min_year": -5},
        {"ratings": [good], "min_year": "1990s"},
    ]
    pool = [("POST", "/recommend", None, json.dumps(b).encode()) for b in bodies]
    pool += [("POST", "/recommend", None, raw) for raw in BAD_BODIES]
    pool += [
        ("DELETE", "/recommend", None, None),
        ("PUT", "/health", None, None),
        ("GET", "/no/such/path", None, None),
    ]
    return pool


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the run directory being served")
    parser.add_argument("--url", help="a running server; default: start `deepmovie serve RUN` here")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--variants", type=int, default=24, help="random bad values of each kind per parameter"
    )
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    server = None
    url = args.url
    if url is None:
        url = f"http://127.0.0.1:{args.port}"
        command = [sys.executable, "-m", "deepmovie", "serve", str(args.run), "--port", str(args.port)]
        server = subprocess.Popen(command)
        wait_healthy(url, server)
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            spec = http.get("/openapi.json").json()
            valid = {**VALID, "user": known_users(args.run)[0]}
            rng = random.Random(args.seed)
            pool = query_requests(spec, valid, rng, args.variants) + body_requests()
            rng.shuffle(pool)
            counts: collections.Counter[str] = collections.Counter()
            failures = []
            for n in range(args.requests):
                method, path, query, body = pool[n % len(pool)]
                headers = {"content-type": "application/json"} if body is not None else {}
                try:
                    answer = http.request(method, path, params=query, content=body, headers=headers)
                    status = answer.status_code
                    json.loads(answer.content or b"null")  # every answer is JSON
                except (httpx.HTTPError, ValueError):
                    status = 0
                counts[f"{status // 100}xx" if status else "lost"] += 1
                if not 400 <= status < 500:
                    failures.append(f"{method} {path} {query} {body[:80] if body else ''!r} -> {status}")
            healthy = http.get("/health").status_code == 200
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
    result = {
        "requests": args.requests,
        "distinct": len(pool),
        "answers": dict(sorted(counts.items())),
        "healthy_after": healthy,
    }
    print(json.dumps(result, indent=2))
    for line in failures[:20]:
        print("not a 4xx:", line, file=sys.stderr)
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    sys.exit(1 if failures or not healthy else 0)


if __name__ == "__main__":
    main()
