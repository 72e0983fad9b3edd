"""The lecture's AutoRec table: I-AutoRec test RMSE on ML-1M for each decoder f and encoder g.

Every cell trains the committed preset (``configs/autorec-ml-1m.yaml``: its hyperparameters were
chosen on validation rows for the sigmoid encoder) with only ``f`` and ``g`` changed; the epoch count
of each cell is chosen on its own validation rows, and the test rows are scored once. Usage::

    python benchmarks/autorec_fg.py --data ../shared/data/ml-1m --out benchmarks/results/autorec-fg.md
"""

from __future__ import annotations

import argparse
import datetime
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from common import write_report

from deepmovie import machine
from deepmovie.config import build_config, load_config_file
from deepmovie.experiment import run

PRESET = Path(__file__).resolve().parents[1] / "configs" / "autorec-ml-1m.yaml"
# (f, g) -> the lecture's (and the AutoRec paper's) I-AutoRec RMSE on ML-1M
LECTURE = {
    ("identity", "identity"): 0.872,
    ("sigmoid", "identity"): 0.852,
    ("identity", "sigmoid"): 0.831,
    ("sigmoid", "sigmoid"): 0.836,
}


def train_cell(values: dict) -> dict:
    """One cell, in its own process with one torch thread (``--jobs`` cells share the cores)."""
    torch.set_num_threads(1)
    return run(build_config(values), None, quiet=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/ml-1m")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/autorec-fg.md"))
    parser.add_argument("--jobs", type=int, default=2, help="cells trained at once")
    args = parser.parse_args()

    base = load_config_file(PRESET)
    cells = [
        {**base, "data": args.data, "params": {**base["params"], "decoder": f, "encoder": g}}
        for f, g in LECTURE
    ]
    with ProcessPoolExecutor(args.jobs) as pool:
        summaries = list(pool.map(train_cell, cells))
    rows = [(f, g, s, published) for ((f, g), published), s in zip(LECTURE.items(), summaries, strict=True)]

    lines = [
        "# AutoRec: the lecture's f / g table on ML-1M",
        "",
        f"- command: `python benchmarks/autorec_fg.py --data {args.data} --jobs {args.jobs} "
        f"--out {args.out}`",
        f"- date: {datetime.date.today().isoformat()}",
        f"- machine: {machine.describe()}",
        f"- preset: `configs/autorec-ml-1m.yaml` with `decoder` (f) and `encoder` (g) changed; split "
        f"{rows[0][2]['split']} (hash {rows[0][2]['split_hash'][:8]}), 10% of the training part validates",
        "- the lecture's figures are from the AutoRec paper (90/10 split, its own seeds): same protocol, not "
        "the same rows",
        "",
        "| f (decoder) | g (encoder) | test RMSE | valid RMSE | best epoch | fit s | lecture RMSE |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {f} | {g} | {s['test_rmse']:.4f} | {s['valid_rmse']:.4f} | {s['best_epoch']} | "
        f"{s['fit_seconds']:.0f} | {published:.3f} |"
        for f, g, s, published in rows
    ]
    write_report(args.out, lines)


if __name__ == "__main__":
    main()
