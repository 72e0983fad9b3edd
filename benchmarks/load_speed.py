"""How fast ``load_dataset`` reads a 20M-row ratings folder: cold (parse the CSV, build the cache) and warm
(memory-map the binary cache), with the peak memory of each.

Every measurement runs in a fresh Python process, so its peak RSS is that of one load and nothing else;
cold runs each get an empty DEEPMOVIE_HOME, warm runs reuse the home the first cold run filled. The OS
page cache is left alone (dropping it needs root and would disturb other work on the machine): the CSV
is read from memory, as it is right after a download or a previous load. Usage::

    python benchmarks/load_speed.py --rows 20000263 --out benchmarks/results/load-speed.md

``--data FOLDER`` measures an existing MovieLens-style folder instead of generating ML-20M-shaped data
with ``deepmovie.data.synth``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

# The parent imports nothing heavy before the measurements: on Linux a child's ru_maxrss starts at its
# parent's RSS at fork time (and survives exec), so a parent holding torch would inflate every child.
ML_20M_USERS, ML_20M_ITEMS, ML_20M_RATINGS = 138_493, 26_744, 20_000_263  # as deepmovie.data.synth
TARGET_COLD_SECONDS, TARGET_PEAK_GB = 15.0, 3.0

# Runs in the child process: times the load and its phases, reports JSON on the last stdout line.
# Phases are timed by wrapping module functions, so a function renamed in dataset.py or readers.py
# simply drops out of the phase table instead of breaking the benchmark.
CHILD = r"""
import json, resource, sys, time
from collections import defaultdict

import numpy as np

import deepmovie.data.dataset as dataset
import deepmovie.data.interactions as interactions
import deepmovie.data.readers as readers

timers = defaultdict(float)
calls = defaultdict(int)


def timed(label, function):
    def wrapper(*args, **kwargs):
        began = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            timers[label] += time.perf_counter() - began
            calls[label] += 1
    return wrapper


PHASES = [
    (dataset, "_resolve", "resolve folder"),
    (dataset, "_read_cached", "ratings (parse + encode, or open the cache)"),
    (dataset, "read_ratings", "  read_ratings"),
    (readers, "_read_csv_chunks", "    PyArrow read_csv"),
    (readers, "_columns_to_raw", "    columns to NumPy + checks"),
    (dataset, "_check_range", "  rating range check"),
    (interactions.IdMap, "encode", "  id encoding (users + items)"),
    (dataset, "_deduplicate", "  duplicate check"),
    (dataset, "_write_cache", "  cache write"),
    (dataset, "load_side_info", "movies.csv (side info)"),
    (dataset, "_check_listed", "listed-id check"),
]
for owner, name, label in PHASES:
    if isinstance(owner, type) and hasattr(owner, name):  # a classmethod: wrap the bound method
        bound = getattr(owner, name)
        setattr(owner, name, classmethod(lambda cls, *a, _f=timed(label, bound), **k: _f(*a, **k)))
    elif hasattr(owner, name):
        setattr(owner, name, timed(label, getattr(owner, name)))


def rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def high_water():  # the same peak from the kernel's own counter for this process image
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) * 1024
    return 0


before = rss()
began = time.perf_counter()
data = dataset.load_dataset(sys.argv[1])
seconds = time.perf_counter() - began
peak, hwm = rss(), high_water()
began = time.perf_counter()
x = data.interactions
checksum = float(np.sum(x.users, dtype=np.int64) + np.sum(x.items, dtype=np.int64) + np.sum(x.ratings))
if x.timestamps is not None:
    checksum += float(np.sum(x.timestamps))
touch = time.perf_counter() - began
print(json.dumps({
    "seconds": seconds, "peak_rss": peak, "vm_hwm": hwm, "rss_before": before,
    "cache_min_rows": getattr(dataset, "CACHE_MIN_ROWS", 0), "touch_seconds": touch,
    "rows": len(x), "users": data.n_users, "items": data.n_items, "parsed": "  read_ratings" in timers,
    "phases": {label: timers[label] for _, _, label in PHASES if label in timers},
    "checksum": checksum, "describe": data.describe(),
}))
"""

SYNTH_CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from deepmovie.data.synth import synthesize
began = time.perf_counter()
report = synthesize("ml-20m", Path(sys.argv[1]), seed=0, sizes=tuple(json.loads(sys.argv[2])), quiet=True)
print(report, file=sys.stderr)
print(json.dumps({"seconds": time.perf_counter() - began,
                  "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def _child(code: str, args: list[str], home: Path) -> dict:
    """Run ``code`` in a fresh interpreter with its own DEEPMOVIE_HOME and return its JSON report."""
    env = {**os.environ, "DEEPMOVIE_HOME": str(home)}
    load = os.getloadavg()[0]
    done = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.exit(f"measurement failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["load_avg"] = load
    result["stderr"] = done.stderr
    return result


def ml20m_sizes(rows: int) -> tuple[int, int, int]:
    """ML-20M's users and items scaled to ``rows`` ratings (same ratings per user and per item)."""
    fraction = rows / ML_20M_RATINGS
    users = max(1, round(ML_20M_USERS * fraction))
    items = max(round(ML_20M_ITEMS * fraction), 500)
    return users, items, rows


def _gb(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.2f} GB"


def _joined(runs: list, key: str, digits: int) -> str:
    return ", ".join(f"{r[key]:.{digits}f}" for r in runs)


def _meminfo() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return f"{int(line.split()[1]) / 1024**2:.1f} GiB RAM"
    except OSError:
        pass
    return "RAM unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=ML_20M_RATINGS, help="ratings to generate")
    parser.add_argument("--data", type=Path, help="measure this folder instead of generating one")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/load-speed.md"))
    parser.add_argument("--workdir", type=Path, help="where the data and caches go (default: a temp dir)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="load-speed-", dir=args.workdir))
    try:
        synth = None
        folder = args.data
        if folder is None:
            folder = work / "ml-20m-synth"
            sizes = ml20m_sizes(args.rows)
            print(f"generating {sizes[2]:,} ratings ({sizes[0]:,} users, {sizes[1]:,} items) in {folder}")
            synth = _child(SYNTH_CHILD, [str(folder), json.dumps(sizes)], work / "home-synth")
            print(synth["stderr"].strip())
        cold, warm = [], []
        for run in range(args.repeats):
            cold.append(_child(CHILD, [str(folder)], work / f"home-cold-{run}"))
            print(
                f"cold {run + 1}: {cold[-1]['seconds']:.2f} s, peak {_gb(cold[-1]['peak_rss'])}", flush=True
            )
        for run in range(args.repeats):
            warm.append(_child(CHILD, [str(folder)], work / "home-cold-0"))
            print(
                f"warm {run + 1}: {warm[-1]['seconds']:.3f} s, peak {_gb(warm[-1]['peak_rss'])}", flush=True
            )
        cached = cold[0]["rows"] >= cold[0]["cache_min_rows"]
        if not all(r["parsed"] for r in cold) or (cached and any(r["parsed"] for r in warm)):
            sys.exit("cache misbehaved: a cold run did not parse, or a warm run did")
        if len({(r["rows"], r["users"], r["items"], r["checksum"]) for r in cold + warm}) != 1:
            sys.exit("cold and warm loads returned different data")
        text = _report(args, folder, synth, cold, warm)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(text)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _report(args: argparse.Namespace, folder: Path, synth: dict | None, cold: list, warm: list) -> str:
    import numpy as np
    import pyarrow as pa
    import torch

    from deepmovie import machine

    def median(runs: list, key: str) -> float:
        return statistics.median(r[key] for r in runs)

    ratings = folder / "ratings.csv"
    size = ratings.stat().st_size if ratings.is_file() else None
    first = cold[0]
    cold_s, cold_peak = median(cold, "seconds"), median(cold, "peak_rss")
    met = cold_s <= TARGET_COLD_SECONDS and max(r["peak_rss"] for r in cold) <= TARGET_PEAK_GB * 1e9
    command = shlex.join(["python", "benchmarks/load_speed.py", *sys.argv[1:]])
    lines = [
        "# Load speed: `load_dataset` on a 20M-row ratings folder",
        "",
        f"- command: `{command}`",
        f"- date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {machine.describe()}, {_meminfo()}",
        f"- versions: Python {sys.version.split()[0]}, numpy {np.__version__}, pyarrow {pa.__version__}, "
        f"torch {torch.__version__}",
        f"- data: {first['describe']}"
        + (f"; ratings.csv {size / 1e6:,.0f} MB" if size else "")
        + (" (generated by `deepmovie.data.synth`, ML-20M shape, seed 0)" if synth else f" ({folder})"),
        f"- each figure: median of {args.repeats} runs, each in a fresh process; peak RSS is "
        "`getrusage(RUSAGE_SELF).ru_maxrss` of that process (the interpreter and imports included; their "
        "share is the 'RSS after imports' column; VmHWM from /proc/self/status is the same peak, as a "
        "check). Cold = empty DEEPMOVIE_HOME: parse, validate, encode "
        "and write the `.npy` cache; warm = the next load, which memory-maps that cache. The CSV itself "
        "sits in the OS page cache in both (it was just written).",
        "- 'first pass' = one `np.sum` over each column after the load: the page faults a memory-mapped "
        "warm load defers to its first use.",
        "- the machine is shared: '1-min load avg' is the system load just before each run (2 = both "
        "cores busy with other work).",
        "",
        "| load | seconds (median) | runs (s) | peak RSS (median) | VmHWM (median) | RSS after imports "
        "| first pass s | 1-min load avg | target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, runs, target in (
        ("cold", cold, f"<= {TARGET_COLD_SECONDS:g} s and <= {TARGET_PEAK_GB:g} GB: "
                       + ("**met**" if met else "**missed**")),
        ("warm (cache)", warm, "near instant"),
    ):  # fmt: skip
        lines.append(
            f"| {name} | {median(runs, 'seconds'):.3f} | {_joined(runs, 'seconds', 3)} "
            f"| {_gb(median(runs, 'peak_rss'))} | {_gb(median(runs, 'vm_hwm'))} "
            f"| {_gb(median(runs, 'rss_before'))} "
            f"| {median(runs, 'touch_seconds'):.3f} | {_joined(runs, 'load_avg', 1)} | {target} |"
        )
    if synth:
        lines.append(
            f"| (generating the data: `synthesize`) | {synth['seconds']:.1f} | 1 run "
            f"| {_gb(synth['peak_rss'])} | | | | {synth['load_avg']:.1f} | |"
        )
    labels = list(dict.fromkeys([k for r in cold + warm for k in r["phases"]]))
    lines += [
        "",
        "Phases (median seconds; an indented row is part of the less indented row above it):",
        "",
        "| phase | cold | warm |",
        "|---|---|---|",
    ]
    for label in labels:
        values = [statistics.median(r["phases"].get(label, 0.0) for r in runs) for runs in (cold, warm)]
        shown = label.replace("  ", "&nbsp;&nbsp;")
        lines.append(f"| {shown} | {values[0]:.3f} | {values[1]:.3f} |")
    lines.append(f"| **whole load** | {cold_s:.3f} | {median(warm, 'seconds'):.3f} |")
    lines.append("")
    lines.append(f"Cold peak RSS {_gb(cold_peak)} (median), {_gb(max(r['peak_rss'] for r in cold))} (max).")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
