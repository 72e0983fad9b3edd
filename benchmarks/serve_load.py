"""Latency of ``GET /recommend`` under N concurrent keep-alive clients for T seconds (bounded).

Each client is an asyncio task on its own HTTP/1.1 connection, sending the next request as soon as the
last answer is read (closed loop), for a random known user of the run. Plain asyncio streams keep the
client's own cost small: it shares the machine with the server. Without ``--url`` the script starts
``deepmovie serve RUN`` (or ``deepmovie serve --ranker RUN --rater RUN``) itself and stops it
afterwards. RUN may be a rating or a ranking run; ``--no-explain`` asks for lists without the
"because you liked" reasons. The load average is recorded at the start and at the end: other jobs on
the machine show there. The CPU time the server's processes (when this script starts them) and the
client take over the measured seconds is reported per request: what one answer costs under load,
HTTP included.

    python benchmarks/serve_load.py RUN --clients 50 --seconds 30 --workers 2
    python benchmarks/serve_load.py --ranker /tmp/ials --rater /tmp/bmf --clients 50 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np


def artifact_sizes(run: Path) -> dict[str, int]:
    """Bytes of each file a server reads from a run directory (and their total): what serving costs."""
    files = {p.relative_to(run).as_posix(): p.stat().st_size for p in sorted(run.rglob("*")) if p.is_file()}
    return {**files, "total": sum(files.values())}


def known_users(run: Path) -> list[str]:
    """Raw ids of the users the model was trained on (others answer 404)."""
    fold = run if (run / "seen.npz").is_file() else run / "fold-0"
    with (
        np.load(run / "ids.npz", allow_pickle=False) as ids,
        np.load(fold / "seen.npz", allow_pickle=False) as seen,
    ):
        rated = np.diff(seen["indptr"]) > 0
        return [str(u) for u in ids["users"][rated]]


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    lengths = [int(v) for k, _, v in (x.partition(":") for x in lines[1:]) if k.lower() == "content-length"]
    if not lengths:
        raise ValueError("an answer without Content-Length")
    await reader.readexactly(lengths[0])
    return status


async def client(host: str, port: int, paths: list[str], deadline: float, seed: int, out: dict) -> None:
    rng = random.Random(seed)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            request = f"GET {rng.choice(paths)} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
            began = time.perf_counter()
            try:
                writer.write(request)
                status = await read_response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                out["errors"] += 1
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            out["latencies"].append(time.perf_counter() - began)
            if status != 200:
                out["errors"] += 1
    finally:
        writer.close()


def session_cpu_seconds(session: int) -> float | None:
    """CPU seconds (user and system) of every process of a session: a server and its workers. Read
    from Linux's /proc; None elsewhere."""
    if not Path("/proc/self/stat").is_file():
        return None
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()  # after the command's name
        except OSError:  # a process that ended meanwhile
            continue
        if int(fields[3]) == session:
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def per_request_ms(seconds: float | None, requests: int) -> float | None:
    """CPU milliseconds per answered request; None where the CPU time is unknown."""
    return round(seconds / requests * 1e3, 3) if seconds is not None and requests else None


async def load(
    url: str,
    paths: list[str],
    clients: int,
    seconds: float,
    warmup: float,
    server_cpu: Callable[[], float | None] = lambda: None,
) -> dict:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    warm = {"latencies": [], "errors": 0}
    await asyncio.gather(
        *(client(host, port, paths, time.perf_counter() + warmup, n, warm) for n in range(clients))
    )
    out = {"latencies": [], "errors": 0}
    server_began, client_began = server_cpu(), time.process_time()
    began = time.perf_counter()
    deadline = began + seconds
    await asyncio.gather(*(client(host, port, paths, deadline, 1000 + n, out) for n in range(clients)))
    elapsed = time.perf_counter() - began
    client_seconds, server_ended = time.process_time() - client_began, server_cpu()
    server_seconds = server_ended - server_began if server_began is not None else None
    ms = np.asarray(out["latencies"]) * 1e3
    return {
        "clients": clients,
        "seconds": round(elapsed, 2),
        "requests": len(ms),
        "errors": out["errors"],
        "requests_per_second": round(len(ms) / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p90_ms": round(float(np.percentile(ms, 90)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
        "mean_ms": round(statistics.fmean(ms), 2),
        "server_cpu_ms_per_request": per_request_ms(server_seconds, len(ms)),
        "client_cpu_ms_per_request": per_request_ms(client_seconds, len(ms)),
    }


def wait_healthy(url: str, server: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the server exited with code {server.returncode}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    stop(server)
    sys.exit("the server did not answer /health in time")


def stop(server: subprocess.Popen) -> None:
    """Stop the server and its workers: SIGTERM to its process group, SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return
        try:
            server.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def health(url: str) -> dict:
    with urllib.request.urlopen(url + "/health", timeout=10) as answer:
        return json.loads(answer.read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "run", type=Path, nargs="?", help="the run directory being served (user ids come from it)"
    )
    parser.add_argument("--ranker", type=Path, help="the ranker's run (instead of RUN)")
    parser.add_argument("--rater", type=Path, help="a rating run paired with it (predicted stars)")
    parser.add_argument(
        "--explain",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="ask for the 'because you liked' reasons (the API's default)",
    )
    parser.add_argument("--url", help="a running server; default: start `deepmovie serve RUN` here")
    parser.add_argument("--port", type=int, default=8765, help="port of the server this script starts")
    parser.add_argument("--workers", type=int, default=2, help="server processes of the server it starts")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before measuring")
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--json-out", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args()
    if (args.run is None) == (args.ranker is None):
        parser.error("give the served run: RUN or --ranker RUN")
    run = args.run or args.ranker
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the server is stopped on the way out
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    users = known_users(run)
    query = "" if args.explain else "&explain=false"
    paths = [f"/recommend?user={u}&k={args.k}{query}" for u in users]
    server = None
    url = args.url
    if url is None:
        url = f"http://127.0.0.1:{args.port}"
        command = [sys.executable, "-m", "deepmovie", "serve", "--port", str(args.port)]
        command += [str(args.run)] if args.run else ["--ranker", str(args.ranker)]
        command += ["--rater", str(args.rater)] if args.rater else []
        # Its own process group: stopping it stops its worker processes too.
        server = subprocess.Popen([*command, "--workers", str(args.workers)], start_new_session=True)
        wait_healthy(url, server)
    url = url.rstrip("/")
    served = health(url)
    load_start = [round(x, 2) for x in os.getloadavg()]
    server_cpu = partial(session_cpu_seconds, server.pid) if server is not None else lambda: None
    try:
        result = asyncio.run(load(url, paths, args.clients, args.seconds, args.warmup, server_cpu))
    finally:
        if server is not None:
            stop(server)
    result.update({"k": args.k, "explain": args.explain, "users": len(users)})
    result.update({"workers": args.workers if server else None, "ranker": served.get("ranker")})
    result.update({"rater": served.get("rater"), "scoring": served.get("scoring")})
    result["inline"] = served.get("inline")  # whether the server computes these lists on its event loop
    result["load_average_start"] = load_start
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    result["cores"] = os.cpu_count()
    result["artifact_bytes"] = {str(r): artifact_sizes(r) for r in (run, args.rater) if r is not None}
    print(json.dumps(result, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    sys.exit(1 if result["errors"] else 0)


if __name__ == "__main__":
    main()
