"""Seconds per hybrid iteration for each text encoder (the poster's time table), split into its parts.

An iteration is the poster's three steps: the user sweep and the item sweep (closed-form, batched
ALS) and the encoder's epochs on the new item factors. Each encoder runs ``--iterations``
iterations after one warm-up; the median is reported. With ``--table`` (the JSON that
``hybrid_bench.py`` writes) the report adds each encoder's iteration count in that table and the
full run time it implies. Usage::

    python benchmarks/hybrid_speed.py --data ../shared/data/ml-1m --split convmf \\
        --table benchmarks/results/hybrid-ml-1m.json --out benchmarks/results/hybrid-speed.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from common import write_report

from deepmovie import machine
from deepmovie.config import build_config
from deepmovie.experiment import build_model, prepare, select_device
from deepmovie.models.hybrid.encoders import ENCODERS

# The poster's "single epoch training time" per base module on ML-1M (one NVIDIA A10), in seconds.
POSTER = {"cnn": 2.7720, "cnn-kan": 3.1637, "lstm": 3.8126, "resnet": 4.2604, "transformer": 10.9185}


def time_iterations(values: dict, iterations: int, device: torch.device) -> dict[str, float]:
    """Median seconds of the ALS part, the encoder part and the whole iteration."""
    config = build_config(values)
    dataset, splits = prepare(config)
    model = build_model(config, dataset, splits[0], device)
    model.prepare(splits[0].train, config.seed)
    model.train()
    parts: dict[str, list[float]] = {"als": [], "encoder": [], "iteration": []}
    for iteration in range(1, iterations + 2):  # the first one warms up and is not counted
        began = time.perf_counter()
        model.solve_factors(iteration)
        _sync(device)
        middle = time.perf_counter()
        model.fit_encoder(iteration)
        _sync(device)
        ended = time.perf_counter()
        if iteration > 1:
            parts["als"].append(middle - began)
            parts["encoder"].append(ended - middle)
            parts["iteration"].append(ended - began)
    return {name: statistics.median(values) for name, values in parts.items()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/ml-1m")
    parser.add_argument("--split", default="convmf")
    parser.add_argument("--factors", type=int, default=50)
    parser.add_argument("--encoders", default=",".join(ENCODERS))
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--table", type=Path, default=None, help="hybrid_bench.py's JSON (iteration counts)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/hybrid-speed.md"))
    args = parser.parse_args()

    device = select_device(args.device)
    table = json.loads(args.table.read_text()) if args.table else {}
    began = datetime.datetime.now(datetime.UTC)
    lines = [
        f"# Seconds per hybrid iteration by encoder: {Path(args.data).name}, split `{args.split}`",
        "",
        f"- command: `python {' '.join(sys.argv)}`",
        f"- date: {began:%Y-%m-%d %H:%M} UTC",
        f"- machine: {machine.describe(device)}",
        f"- {args.factors} factors, encoder defaults, {args.iterations} timed iterations after one warm-up, "
        "median; ALS = user sweep + item sweep (+ encoding every item once), encoder = its epochs "
        "on the new item factors",
        "",
        "| encoder | ALS s | encoder s | s / iteration | poster (A10 GPU) | iterations in the table "
        "| full run (min) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in args.encoders.split(","):
        values = {
            "model": "hybrid",
            "data": args.data,
            "split": args.split,
            "device": str(device),
            "params": {"factors": args.factors, "encoder": name},
        }
        seconds = time_iterations(values, args.iterations, device)
        ran = table.get(name, {}).get("epochs")
        full = f"{ran * seconds['iteration'] / 60:.1f}" if ran else "–"
        lines.append(
            f"| {name} | {seconds['als']:.2f} | {seconds['encoder']:.2f} | **{seconds['iteration']:.2f}** "
            f"| {POSTER.get(name, '–')} | {ran or '–'} | {full} |"
        )
    write_report(args.out, lines)


if __name__ == "__main__":
    main()
