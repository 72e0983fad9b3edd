"""Speed of the ranking models on CPU, against the ``implicit`` package measured in the same run.

1. ``ease`` on ML-1M: one closed-form fit (Gram, Cholesky, inverse) of the ``random:0.2`` training part.
2. One ``ials`` sweep (all items, then all users) on the same rows with k=64, with each solver (``cg``,
   the default, and ``exact``), against one iteration of
   ``implicit``'s ``AlternatingLeastSquares`` (k=64, its conjugate-gradient solver, its own threads;
   seconds per iteration = (fit with ``--iterations`` + 1 iterations - fit with 1) / ``--iterations``,
   so set-up is not counted for either side).

Every figure is the median of ``--repeats`` runs; the load average is printed beside them. Usage::

    python benchmarks/ranking_speed.py --data ../shared/data/ml-1m --out benchmarks/results/ranking-speed.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from common import median, write_report

from deepmovie import machine
from deepmovie.config import build_config
from deepmovie.experiment import build_model, prepare


def prepared(model_name: str, data: str, params: dict):
    """A model prepared (not yet trained) on ML-1M's ``random:0.2`` training part, and those rows."""
    config = build_config({"model": model_name, "data": data, "split": "random:0.2", "params": params})
    dataset, splits = prepare(config)
    model = build_model(config, dataset, splits[0], torch.device("cpu"))
    model.prepare(splits[0].train, seed=0)
    model.train()
    return model, splits[0].train


def ease_fit(data: str, reg: float) -> float:
    model, _ = prepared("ease", data, {"reg": reg})
    began = time.perf_counter()
    model.train_epoch(1)
    return time.perf_counter() - began


def ials_sweep(data: str, factors: int, sweeps: int, solver: str) -> float:
    """The median seconds of ``sweeps`` sweeps (set-up not counted)."""
    model, _ = prepared("ials", data, {"factors": factors, "solver": solver})
    seconds = []
    for epoch in range(1, sweeps + 1):
        began = time.perf_counter()
        model.train_epoch(epoch)
        seconds.append(time.perf_counter() - began)
    return statistics.median(seconds)


def implicit_iteration(data: str, factors: int, iterations: int) -> float:
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    _, train = prepared("popularity", data, {})
    user_items = sp.csr_matrix(train.csr()).astype(np.float32)
    user_items.data[:] = 1.0

    def fit(n: int) -> float:
        algo = AlternatingLeastSquares(factors=factors, iterations=n, random_state=0)
        with threadpool_limits(1, "blas"):
            began = time.perf_counter()
            algo.fit(user_items, show_progress=False)
            return time.perf_counter() - began

    return (fit(iterations + 1) - fit(1)) / iterations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/ml-1m")
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=5, help="sweeps timed per ials/implicit run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ease-reg", type=float, default=2000.0, help="ML-1M's lambda by validation")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ranking-speed.md"))
    args = parser.parse_args()

    load_before = os.getloadavg()
    repeats, sweeps, k = args.repeats, args.iterations, args.factors
    ease, ease_runs = median(lambda: ease_fit(args.data, args.ease_reg), repeats)
    cg, cg_runs = median(lambda: ials_sweep(args.data, k, sweeps, "cg"), repeats)
    exact, exact_runs = median(lambda: ials_sweep(args.data, k, sweeps, "exact"), repeats)
    peer, peer_runs = median(lambda: implicit_iteration(args.data, k, sweeps), repeats)
    load_after = os.getloadavg()
    each = f"median of {sweeps} sweeps a run"
    rows = [
        (f"ease fit, ML-1M random:0.2 train part, lambda {args.ease_reg:g}", ease, ease_runs, "goal <= 3 s"),
        (f"ials sweep (items + users), k={k}, solver cg (3 steps)", cg, cg_runs, each),
        (f"ials sweep (items + users), k={k}, solver exact", exact, exact_runs, each),
        (
            f"implicit ALS iteration, k={k} (CG, its threads)",
            peer,
            peer_runs,
            f"ials cg / implicit = {cg / peer:.2f}",
        ),
    ]
    import implicit

    lines = [
        "# Ranking speed (CPU)",
        "",
        f"- command: `python benchmarks/ranking_speed.py --repeats {repeats} --iterations {sweeps}`",
        f"- date: {datetime.date.today().isoformat()}",
        f"- machine: {machine.describe()}",
        f"- load average (1 min) before / after: {load_before[0]:.2f} / {load_after[0]:.2f}",
        f"- torch {torch.__version__} ({torch.get_num_threads()} threads), implicit {implicit.__version__}; "
        f"median of {args.repeats} runs",
        "",
        "| what | seconds (median) | runs | note |",
        "|---|---|---|---|",
    ]
    for name, seconds, runs, note in rows:
        lines.append(f"| {name} | {seconds:.3f} | {', '.join(f'{r:.3f}' for r in runs)} | {note} |")
    write_report(args.out, lines)


if __name__ == "__main__":
    main()
