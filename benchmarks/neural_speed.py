"""Seconds per epoch of the neural families on ML-1M (CPU), against the tutorial's pipeline in the same run.

1. ``deepmf`` as in the tutorial (user and movie embeddings of 25, two hidden layers of 64, ReLU, Adam
   1e-3 on every weight) in the tutorial's pipeline — a per-sample ``Dataset`` + ``DataLoader``, batch
   512 — and in DeepMovie's engine (device-resident tensors, one seeded permutation sliced per batch)
   at batch 512 and 4096.
2. One epoch of every other neural model at its defaults: autorec (I-AutoRec, 500 hidden), deeprec,
   cdae, gmf, ncf-mlp, neumf; and of the ML-1M AutoRec preset (1,000 hidden).

Every figure is the median of ``--repeats`` runs. Usage::

    python benchmarks/neural_speed.py --data ../shared/data/ml-1m --out benchmarks/results/neural-speed.md
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path

import numpy as np
import torch
from common import engine_epoch, median, tutorial_epoch, write_report

from deepmovie import machine
from deepmovie.config import build_config, load_config_file
from deepmovie.experiment import prepare

# The tutorial's optimizer too: dense Adam on every weight (no sparse embedding gradients).
TUTORIAL_DEEPMF = {
    "user_dim": 25,
    "item_dim": 25,
    "hidden": [64, 64],
    "reg": 0.0,
    "lr": 1e-3,
    "sparse": False,
}
OTHERS = ["autorec", "deeprec", "cdae", "gmf", "ncf-mlp", "neumf"]
AUTOREC_PRESET = Path(__file__).resolve().parents[1] / "configs" / "autorec-ml-1m.yaml"


class TutorialDeepMF(torch.nn.Module):
    """The tutorial's network: concatenated embeddings, two ReLU layers of 64, one output."""

    def __init__(self, n_users: int, n_items: int) -> None:
        super().__init__()
        self.user = torch.nn.Embedding(n_users, 25)
        self.item = torch.nn.Embedding(n_items, 25)
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(50, 64),
            torch.nn.ReLU(),
            torch.nn.Linear(64, 64),
            torch.nn.ReLU(),
            torch.nn.Linear(64, 1),
        )

    def forward(self, users, items):
        return self.mlp(torch.cat([self.user(users), self.item(items)], dim=1))[:, 0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/ml-1m")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/neural-speed.md"))
    args = parser.parse_args()

    dataset, splits = prepare(build_config({"model": "deepmf", "data": args.data, "split": "random:0.1"}))
    train = splits[0].train
    n = len(train)
    tutorial, tutorial_runs = median(
        lambda: tutorial_epoch(TutorialDeepMF(dataset.n_users, dataset.n_items), train), args.repeats
    )
    rows = [
        (
            "deepmf (tutorial net) — tutorial pipeline: per-sample Dataset + DataLoader, batch 512",
            tutorial,
            tutorial_runs,
            "",
        ),
    ]
    for batch in (512, 4096):
        params = {**TUTORIAL_DEEPMF, "batch_size": batch}
        ours, runs = median(lambda p=params: engine_epoch("deepmf", args.data, p), args.repeats)
        rows.append(
            (
                f"deepmf (tutorial net) — DeepMovie engine, batch {batch}",
                ours,
                runs,
                f"{tutorial / ours:.1f}x faster",
            )
        )
    for name in OTHERS:
        seconds, runs = median(lambda m=name: engine_epoch(m, args.data, {}), args.repeats)
        rows.append((f"{name} (defaults) — DeepMovie engine", seconds, runs, ""))
    preset = load_config_file(AUTOREC_PRESET)["params"]
    seconds, runs = median(lambda: engine_epoch("autorec", args.data, preset), args.repeats)
    rows.append(("autorec (configs/autorec-ml-1m.yaml: 1,000 hidden) — DeepMovie engine", seconds, runs, ""))

    lines = [
        "# Neural models: seconds per epoch on ML-1M (CPU)",
        "",
        f"- command: `python benchmarks/neural_speed.py --data {args.data} --repeats {args.repeats}`",
        f"- date: {datetime.date.today().isoformat()}",
        f"- machine: {machine.describe()}",
        f"- torch {torch.__version__}, numpy {np.__version__}; {n:,} training ratings (random:0.1 minus "
        f"validation); median of {args.repeats} runs; set-up (loading, building tensors) not counted",
        "- no GPU was available to this benchmark",
        "",
        "| what | seconds / epoch (median) | runs | ratings/s | note |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {what} | {m:.3f} | {', '.join(f'{r:.3f}' for r in runs)} | {n / m:,.0f} | {note} |"
        for what, m, runs, note in rows
    ]
    write_report(args.out, lines)


if __name__ == "__main__":
    main()
