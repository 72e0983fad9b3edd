"""Train committed preset configs and write one results table (test RMSE, time) with how it was made.

Usage::

    python benchmarks/run_presets.py configs/biased-mf-ml-100k.yaml configs/svdpp-ml-100k.yaml \
        --data-root ../shared/data --out benchmarks/results/factorization-accuracy.md

A dataset *name* in a config (``ml-100k``) is read from ``DATA_ROOT/NAME`` when that folder exists,
so the licensed MovieLens files are read in place instead of being fetched or copied.
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path

from common import write_report

from deepmovie import machine
from deepmovie.config import build_config, load_config_file
from deepmovie.experiment import run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+", type=Path)
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--title", default="Preset results")
    args = parser.parse_args()

    rows = []
    for path in args.configs:
        values = load_config_file(path)
        local = args.data_root / str(values.get("data", ""))
        if local.is_dir():
            values["data"] = str(local)
        summary = run(build_config(values), None, quiet=True)
        rows.append((path, summary))
        print(f"{path}: {_figures(summary)} in {summary['fit_seconds']:.1f} s", flush=True)

    lines = [
        f"# {args.title}",
        "",
        f"- command: `python benchmarks/run_presets.py {' '.join(str(c) for c in args.configs)} "
        f"--data-root {args.data_root} --out {args.out}`",
        f"- date: {datetime.date.today().isoformat()}",
        f"- machine: {machine.describe()}",
        "- hyperparameters were chosen on the validation part of the training rows; the test rows were "
        "scored once",
        "",
        "| config | model | data | split (hash) | test | valid (selects the epoch) | best epoch | refit "
        "| fit s | s/epoch | samples/s | cold test rows |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for path, s in rows:
        per_epoch = sum(s["epoch_seconds"]) / max(len(s["epoch_seconds"]), 1)
        lines.append(
            f"| `{path}` | {s['model']} | {Path(s['data']).name} | {s['split']} ({s['split_hash'][:8]}) "
            f"| {_figures(s)} | {s['monitor']} {_number(s['valid_' + s['monitor']])} | {s['best_epoch']} "
            f"| {'yes' if s.get('refit') else 'no'} | {s['fit_seconds']:.1f} | {per_epoch:.3f} "
            f"| {s['train_samples_per_second']:,.0f} | {s['cold_test_rows']} |"
        )
    write_report(args.out, lines)


FIGURES = {
    "rating": ("rmse", "mae", "accuracy", "argmax_rmse"),
    "like": ("auc", "logloss", "accuracy"),
    "implicit": ("ndcg@10", "hr@10", "recall@10"),
}


def _figures(summary: dict) -> str:
    """The test figures of the run's task, e.g. ``RMSE 0.9019, MAE 0.7101``."""
    names = [n for n in FIGURES[summary["task"]] if summary.get(f"test_{n}") is not None]
    return ", ".join(f"{n.upper() if '@' not in n else n} {summary[f'test_{n}']:.4f}" for n in names)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


if __name__ == "__main__":
    main()
