"""Top-N on one data set: settings chosen on validation rows, then one ranking bench with peers.

For each label a few candidate settings are fitted on the training part and scored on its validation
rows (``experiment.fit_valid``: the test rows are never looked at); the best becomes the label's preset
(written beside the results, with every candidate's validation NDCG@10), and ``deepmovie bench
--rank-k 10 --peers implicit`` then trains each label with ``refit`` (train + validation rows) and
scores the test rows once, next to implicit's ALS and BPR on the same rows.

    python benchmarks/ranking_bench.py ml-100k-u1 --out benchmarks/results/ranking-ml-100k-u1
"""

from __future__ import annotations

import argparse
import itertools
import shlex
import sys
from pathlib import Path

import torch
import yaml

from deepmovie.bench import run_bench
from deepmovie.config import build_config
from deepmovie.experiment import fit_valid, prepare

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DATASETS = {
    "ml-100k-u1": {"data": str(SHARED / "ml-100k"), "split": "fold:u1"},
    "ml-1m": {"data": str(SHARED / "ml-1m"), "split": "random:0.2"},
    "ml-latest-small-seed42": {
        "data": str(SHARED / "splits" / "ml-latest-small-seed42" / "train.csv"),
        "test_file": str(SHARED / "splits" / "ml-latest-small-seed42" / "test.csv"),
    },
}


def grid(**axes: list) -> list[dict]:
    return [dict(zip(axes, values, strict=True)) for values in itertools.product(*axes.values())]


# label -> (model, candidate params). EASE as Steck published it is the reference; "ease-graded" is
# ours (ratings in, chosen targets out); both only by lambda and the two options, on validation.
CANDIDATES = {
    "popularity": ("popularity", [{}]),
    "item-knn": ("item-knn", grid(neighbours=[50, 200], shrink=[10.0])),
    "ease": ("ease", grid(reg=[200.0, 500.0, 1000.0, 2000.0])),
    "ease-graded": ("ease", grid(reg=[1000.0, 3000.0, 10000.0], input=["rating"], target_rating=[None, 4.0])),
    "ials": ("ials", grid(alpha0=[0.1, 0.3], reg=[0.01, 0.03])),
    "multvae": ("multvae", [{}]),
    "multdae": ("multdae", [{}]),
    "bpr": ("bpr", [{}]),
    "two-tower": ("two-tower", [{}]),
    "cdae": ("cdae", [{}]),
}


def choose(label: str, model: str, candidates: list[dict], rows: dict, log) -> tuple[dict, list[str]]:
    """The candidate with the best validation NDCG@10, and a line per candidate (a lone candidate, the
    model's defaults, is taken without a fit)."""
    if len(candidates) == 1:
        return candidates[0], [f"| {label} | `{candidates[0]}` (its defaults; the only candidate) | - |"]
    best, best_figure, lines = candidates[0], -1.0, []
    for params in candidates:
        config = build_config({"model": model, **rows, "device": "cpu", "params": params})
        dataset, (split,) = prepare(config)
        figure = fit_valid(config, dataset, split, torch.device("cpu")).best_valid
        lines.append(f"| {label} | `{params}` | {figure:.4f} |")
        log(f"{label} {params}: valid NDCG@10 {figure:.4f}")
        if figure > best_figure:
            best, best_figure = params, figure
    return best, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sorted(DATASETS))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--labels", default=",".join(CANDIDATES), help="which labels (comma-separated)")
    parser.add_argument(
        "--extra", default="", help="more bench entries, e.g. cdae=cdae@configs/cdae-ml-100k.yaml"
    )
    args = parser.parse_args()
    rows = DATASETS[args.dataset]
    presets = args.out / "presets"
    presets.mkdir(parents=True, exist_ok=True)
    table = ["| label | candidate | valid NDCG@10 |", "|---|---|---|"]
    entries = []
    for label in args.labels.split(","):
        model, candidates = CANDIDATES[label]
        params, lines = choose(label, model, candidates, rows, lambda line: print(line, file=sys.stderr))
        table += lines
        preset = presets / f"{label}.yaml"
        preset.write_text(yaml.safe_dump({"model": model, "refit": True, "params": params}, sort_keys=False))
        entries.append(f"{label}={model}@{preset}")
    (args.out / "selection.md").write_text(
        "# Settings chosen on validation rows (the test rows never scored)\n\n" + "\n".join(table) + "\n"
    )
    entries += [e for e in args.extra.split(",") if e]
    run_bench(
        entries,
        out=args.out,
        data=rows["data"],
        split=rows.get("split"),
        test_file=rows.get("test_file"),
        peers=["implicit"],
        device="cpu",
        overwrite=True,  # the folder is this script's: it already holds presets/ and selection.md
        rank_k=10,
        command=shlex.join(["python", "benchmarks/ranking_bench.py", *sys.argv[1:]]),
        notes=["settings per label chosen on validation rows: selection.md; presets/ holds them"],
        log=lambda line: print(line, file=sys.stderr),
    )


if __name__ == "__main__":
    main()
