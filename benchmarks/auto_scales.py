"""``deepmovie auto`` on rating scales and sizes no preset was made for: one table of what it found.

ML-100K's ``u1`` fold is rewritten onto other scales, so every row has a known yardstick (the same
users, items and signal): 1..10 (``2r - Bernoulli(1/2)``), 1..100 (``20r`` less a uniform
0..19), implicit feedback (rows rated 4 or 5, each a 1) and a 10,000-rating sample; with ``--synth``
also ``deepmovie synth ml-20m`` (20 million ratings). Each runs ``deepmovie auto`` (the CLI, as a user
would) with a small budget; the table gives the result, its RMSE over the scale's span (comparable
across scales), the wall time against the budget, and what auto skipped and why. Usage::

    python benchmarks/auto_scales.py --work /tmp/auto-scales --out benchmarks/results/auto-scales.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from common import write_report

from deepmovie import machine

COLUMNS = ["userId", "movieId", "rating", "timestamp"]


def read_fold(path: Path) -> np.ndarray:
    return np.loadtxt(path, dtype=np.int64)  # ML-100K: user, item, rating, timestamp per line


def write(rows: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, rows, fmt="%d", delimiter=",", header=",".join(COLUMNS), comments="")
    return path


def rescaled(rows: np.ndarray, rng: np.random.Generator, scale: str) -> np.ndarray:
    out = rows.copy()
    r = rows[:, 2]
    if scale == "1..10":
        out[:, 2] = 2 * r - rng.integers(0, 2, len(r))
    elif scale == "1..100":
        out[:, 2] = 20 * r - rng.integers(0, 20, len(r))
    elif scale == "implicit":
        out = out[r >= 4]
        out[:, 2] = 1
    return out


def make_data(ml_100k: Path, work: Path, seed: int) -> dict[str, list[str]]:
    """The data arguments of each run, written under ``work``."""
    rng = np.random.default_rng(seed)
    base, test = read_fold(ml_100k / "u1.base"), read_fold(ml_100k / "u1.test")
    runs = {}
    for name, scale in (("scale-1-10", "1..10"), ("scale-1-100", "1..100"), ("implicit", "implicit")):
        train = write(rescaled(base, rng, scale), work / name / "train.csv")
        held = write(rescaled(test, rng, scale), work / name / "test.csv")
        runs[name] = ["--data", str(train), "--test-file", str(held)]
    every = read_fold(ml_100k / "u.data")
    sample = every[np.sort(rng.choice(len(every), 10_000, replace=False))]
    small = write(sample, work / "small-10k" / "ratings.csv")
    runs["small-10k"] = ["--data", str(small), "--split", "random:0.1"]
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ml-100k", type=Path, default=Path("../shared/data/ml-100k"))
    parser.add_argument("--budget", default="3m", help="each run's --budget")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--synth", action="store_true", help="also ML-20M-shaped data (10m budget)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("runs/auto-scales"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/auto-scales.md"))
    args = parser.parse_args()

    began = datetime.datetime.now(datetime.UTC)
    deepmovie = [sys.executable, "-m", "deepmovie"]
    runs = {name: (data, args.budget) for name, data in make_data(args.ml_100k, args.work, args.seed).items()}
    if args.synth:
        synth = args.work / "synth-ml-20m"
        if not (synth / "ratings.csv").is_file():
            subprocess.run([*deepmovie, "synth", "ml-20m", "--out", str(synth), "-q"], check=True)
        runs["synth-ml-20m"] = (["--data", str(synth), "--split", "random:0.1"], "10m")
    rows = []
    for name, (data, budget) in runs.items():
        out = args.work / name / "auto"
        options = ["--budget", budget, "--jobs", str(args.jobs), "--out", str(out), "-q"]
        command = [*deepmovie, "auto", *data, *options]
        print("$", " ".join(command[2:]), flush=True)
        subprocess.run(command, check=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        rows.append((name, json.loads((out / "auto.json").read_text())["summary"]))
    write_report(args.out, report(args, rows, began))


def report(args, rows: list[tuple[str, dict]], began: datetime.datetime) -> list[str]:
    lines = [
        "# `deepmovie auto` on other rating scales and sizes",
        "",
        f"- command: `python {' '.join(sys.argv)}`",
        f"- date: {began:%Y-%m-%d %H:%M} UTC; machine: {machine.describe(torch.device('cpu'))}; "
        f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"- data: ML-100K `u1.base` / `u1.test` rewritten onto each scale (seed {args.seed}; see the "
        "script's docstring), a 10,000-rating sample of `u.data` split `random:0.1`"
        + (", and `deepmovie synth ml-20m` split `random:0.1`" if args.synth else ""),
        "- RMSE / span: the test RMSE divided by the scale's span, comparable across scales (ML-100K u1 "
        "itself: about 0.89 / 4 = 0.22)",
        "",
        "| data | task | scale | training rows | result | test RMSE or NDCG@10 | RMSE / span "
        "| wall s / budget s | skipped (and why) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in rows:
        profile, result = s["profile"], s["result"]
        key = "test_ndcg@10" if s["task"] == "ranking" else "test_rmse"
        value = result.get(key)
        span = profile["high"] - profile["low"]
        per_span = f"{value / span:.4f}" if s["task"] == "rating" and value is not None and span else ""
        lines.append(
            f"| {name} | {s['task']} | {profile['low']:g}..{profile['high']:g} (step {profile['step']:g}) "
            f"| {profile['rows']:,} | {result['kind']} | {'' if value is None else f'{value:.4f}'} "
            f"| {per_span} "
            f"| {s['wall_seconds']:.0f} / {s['budget_seconds']:.0f} | {'; '.join(s['skipped']) or 'none'} |"
        )
    return lines


if __name__ == "__main__":
    main()
