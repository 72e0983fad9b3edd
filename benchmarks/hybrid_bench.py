"""The poster's table: validation-tuned PMF against the hybrid with each text encoder, on one split.

Every cell is a full run (early stopping on validation RMSE; the test RMSE is the one at the
best-validation iteration, scored once). PMF's lambda_U = lambda_V is chosen on validation from ``--reg``;
each hybrid keeps PMF's chosen lambda_U (or chooses one from ``--hybrid-reg-user``) and chooses its own
lambda_V from ``--hybrid-reg``. The report adds the RMSE by item popularity (training ratings per item)
of PMF and of each hybrid, as a table and a plot, and with ``--item-docs`` the RMSE on items with a text
of their own and on the others: where does the text help? ``--split cold-items:F:V`` scores items with
no training rating (their validation items are cold too, so early stopping judges the text alone). With
``--refit`` each cell also retrains on train + valid for its best iteration count, and the report gives
both test RMSEs (the breakdowns are then the refit twins'). Usage::

    python benchmarks/hybrid_bench.py --data ../shared/data/ml-1m --split convmf \\
        --out benchmarks/results/hybrid-ml-1m.md
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import matplotlib
import numpy as np
import torch
from common import write_report

from deepmovie import machine
from deepmovie.bench.runner import train_or_reuse
from deepmovie.blend import Run, run_predictions
from deepmovie.config import build_config, parse_assignments
from deepmovie.experiment import prepare
from deepmovie.metrics import rmse
from deepmovie.models.hybrid.encoders import ENCODERS

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after the backend is chosen

WORD_TABLE_SETTINGS = {"word_vectors", "freeze_word_vectors"}
BUCKETS = [(0, 0), (1, 5), (6, 20), (21, 50), (51, 200), (201, None)]
# The poster's ML-1M RMSE per base module (its own split and PMF; the test error at its best
# validation iteration): a reference for the ML-1M table, not a figure of ours.
POSTER = {
    "pmf": 0.8971,
    "cnn": 0.8733,
    "lstm": 0.8675,
    "resnet": 0.8658,
    "transformer": 0.8601,
    "cnn-kan": 0.8725,
}


def train_cell(task: tuple[dict, str]) -> dict:
    """One run in its own process with one torch thread (``--jobs`` cells share the cores)."""
    values, out = task
    torch.set_num_threads(1)
    return train_or_reuse(build_config(values), Path(out))[0]  # an interrupted benchmark resumes


def settings_for(encoder: str, extra: dict) -> dict:
    """``--set`` values, less the word-table ones for an encoder that reads raw text (minilm)."""
    if hasattr(ENCODERS.get(encoder), "featurize"):
        return {k: v for k, v in extra.items() if k not in WORD_TABLE_SETTINGS}
    return extra


def _short(value: object) -> str:
    """A folder-name form of a parameter value (a dict by a digest of its JSON)."""
    if isinstance(value, dict):
        return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:8]
    return str(value)


def bucket_label(low: int, high: int | None) -> str:
    return f"{low}" if low == high else f"{low}-{high}" if high else f">{low - 1}"


def group_rmse(run_dir: Path, dataset, split, groups: list[np.ndarray]) -> list[tuple[float, int]]:
    """(test RMSE, rows) of the run saved in ``run_dir`` on each group (a mask over the test rows)."""
    test = split.test
    (predicted,) = run_predictions(Run.load(run_dir), dataset, split, test)
    return [
        (rmse(predicted[mask], test.ratings[mask]) if mask.any() else float("nan"), int(mask.sum()))
        for mask in groups
    ]


def popularity_groups(dataset, split) -> list[np.ndarray]:
    """Test rows by their item's training ratings, one mask per ``BUCKETS`` entry."""
    counts = np.bincount(split.train.items, minlength=dataset.n_items)[split.test.items]
    top = counts.max()
    return [(counts >= low) & (counts <= (high if high is not None else top)) for low, high in BUCKETS]


def text_groups(dataset, split) -> list[np.ndarray]:
    """Test rows whose item has a text of its own (from ``--item-docs``), then the rest, whose document
    was built from the metadata: where the text itself has to speak."""
    info = dataset.items
    has_text = np.array([doc != info.describe(i) for i, doc in enumerate(info.documents)])
    own = has_text[split.test.items]
    return [own, ~own]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/ml-1m")
    parser.add_argument("--split", default="convmf")
    parser.add_argument("--item-docs", default=None, help="item_id::text file or plots.tsv-style table")
    parser.add_argument(
        "--with-metadata", action="store_true", help="documents: the built metadata, then the item's text"
    )
    parser.add_argument("--factors", type=int, default=50)
    parser.add_argument("--reg", default="0.05,0.1,0.15,0.2", help="PMF's lambda grid (valid RMSE chooses)")
    parser.add_argument("--hybrid-reg", default="0.05,0.1,0.15", help="the hybrids' lambda_V grid")
    parser.add_argument(
        "--hybrid-reg-user", default=None, help="the hybrids' lambda_U grid (default: PMF's chosen lambda_U)"
    )
    parser.add_argument("--encoders", default=",".join(ENCODERS))
    parser.add_argument("--epochs", type=int, default=40, help="max iterations per cell")
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], help="hybrid parameter key=value")
    parser.add_argument(
        "--shared-set",
        action="append",
        default=[],
        help="parameter key=value of pmf and every hybrid, e.g. biases=true",
    )
    parser.add_argument(
        "--encoder-set",
        action="append",
        default=[],
        help="ENCODER:key=value, a hybrid parameter of one encoder only (over --set)",
    )
    parser.add_argument("--refit", action="store_true", help="also retrain each cell on train + valid")
    parser.add_argument("--jobs", type=int, default=2, help="cells trained at once")
    parser.add_argument("--work", type=Path, default=Path("runs/hybrid-bench"), help="run directories")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/hybrid-ml-1m.md"))
    args = parser.parse_args()

    grid = [float(r) for r in args.reg.split(",")]
    hybrid_grid = [float(r) for r in args.hybrid_reg.split(",")]
    user_grid = [float(r) for r in args.hybrid_reg_user.split(",")] if args.hybrid_reg_user else []
    encoders = args.encoders.split(",")
    extra, both = parse_assignments(args.set), parse_assignments(args.shared_set)
    per_encoder: dict[str, list[str]] = {e: [] for e in encoders}
    for assignment in args.encoder_set:
        encoder, _, setting = assignment.partition(":")
        if encoder not in per_encoder or not setting:
            parser.error(f"--encoder-set {assignment!r}: give ENCODER:key=value, ENCODER one of --encoders")
        per_encoder[encoder].append(setting)
    own = {e: parse_assignments(settings) for e, settings in per_encoder.items()}
    base = {
        "refit": args.refit,
        "data": args.data,
        "split": args.split,
        "item_docs": args.item_docs,
        "item_docs_with_metadata": args.with_metadata,
        "params": {"factors": args.factors, "epochs": args.epochs, "patience": args.patience, **both},
    }
    work = args.work / Path(args.data).name / args.split / ("refit" if args.refit else "")

    def cell(model: str, params: dict) -> tuple[dict, str]:
        shared = {} if model == "bias" else base["params"]
        values = {**base, "model": model, "params": {**shared, **params}}
        label = "-".join(f"{k}={_short(v)}" for k, v in sorted(params.items()))
        return values, str(work / model / label)

    def best(cells: list[tuple[dict, str]], summaries: list[dict]) -> tuple[tuple[dict, str], dict]:
        index = min(range(len(cells)), key=lambda i: summaries[i]["valid_rmse"])
        return cells[index], summaries[index]

    began = datetime.datetime.now(datetime.UTC)
    with ProcessPoolExecutor(args.jobs) as pool:
        bias_cell = cell("bias", {})  # the baseline a cold item gets without text: mu + b_u
        pmf_cells = [cell("pmf", {"reg_user": r, "reg_item": r}) for r in grid]
        *pmf_summaries, bias = pool.map(train_cell, [*pmf_cells, bias_cell])
        pmf_cell, pmf = best(pmf_cells, pmf_summaries)
        users = user_grid or [pmf_cell[0]["params"]["reg_user"]]
        hybrid_cells = {
            e: [
                cell(
                    "hybrid",
                    {
                        "encoder": e,
                        "reg_user": u,
                        "reg_item": r,
                        **settings_for(e, {**extra, **own[e]}),
                    },
                )
                for u in users
                for r in hybrid_grid
            ]
            for e in encoders
        }
        flat = [c for cells in hybrid_cells.values() for c in cells]
        done = dict(zip([c[1] for c in flat], pool.map(train_cell, flat), strict=True))
    results = {"bias": (bias_cell, bias), "pmf": (pmf_cell, pmf)}
    for e, cells in hybrid_cells.items():
        results[e] = best(cells, [done[c[1]] for c in cells])

    config = build_config(pmf_cell[0])
    dataset, splits = prepare(config)
    split = splits[0]
    groups = popularity_groups(dataset, split) + (text_groups(dataset, split) if args.item_docs else [])
    figures = {name: group_rmse(Path(c[1]), dataset, split, groups) for name, (c, _) in results.items()}
    buckets = {name: rows[: len(BUCKETS)] for name, rows in figures.items()}
    by_text = {name: rows[len(BUCKETS) :] for name, rows in figures.items()} if args.item_docs else {}

    stem = args.out.with_suffix("")
    plot = stem.with_name(stem.name + "-popularity.png")
    plot_buckets(buckets, plot, f"{Path(args.data).name} {args.split}")
    lines = report(args, results, buckets, began, plot, dataset.describe())
    if by_text:
        (_, with_text_rows), (_, built_rows) = by_text["pmf"]
        lines += [
            "",
            "## Test RMSE by document: the item's own text, or one built from its metadata"
            + (", of the refit twins" if args.refit else ""),
            "",
            f"| model | own text ({with_text_rows:,} rows) | built document ({built_rows:,} rows) |",
            "|---|---|---|",
        ]
        lines += [f"| {name} | {a:.4f} | {b:.4f} |" for name, ((a, _), (b, _)) in by_text.items()]
    write_report(args.out, lines)
    (stem.with_name(stem.name + ".json")).write_text(
        json.dumps({name: summary for name, (_, summary) in results.items()}, indent=2, default=str) + "\n"
    )


def plot_buckets(buckets: dict[str, list[tuple[float, int]]], path: Path, title: str) -> None:
    labels = [bucket_label(lo, hi) for lo, hi in BUCKETS]
    width = 0.8 / len(buckets)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for k, (name, rows) in enumerate(buckets.items()):
        ax.bar(np.arange(len(labels)) + k * width, [r for r, _ in rows], width, label=name)
    ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels)
    ax.set_xlabel("training ratings of the item")
    ax.set_ylabel("test RMSE")
    ax.set_ylim(0.6, None)
    ax.set_title(f"RMSE by item popularity, {title}")
    ax.legend(ncols=4, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(args, results, buckets, began, plot: Path, data: str) -> list[str]:
    pmf = results["pmf"][1]
    # With --refit, "test_rmse" is the twin's; the validation-stopped model's is kept beside it.
    stopped = "test_rmse_before_refit" if args.refit else "test_rmse"
    ml_1m = data.startswith("ml-1m:")
    command = "python " + " ".join(sys.argv)
    documents = "built from the data (title, year, genres)"
    if args.item_docs:
        documents = (
            f"the texts of {args.item_docs}"
            + (", each after the item's built document" if args.with_metadata else "")
            + "; an item without one keeps its built document"
        )
    columns = (
        "| model | lambda_U | lambda_V | best valid RMSE | test RMSE | test vs pmf "
        + ("| refit twin's test RMSE | twin vs pmf's twin " if args.refit else "")
        + "| iterations (best) | s / iteration (median) | training s | poster, ML-1M |"
    )
    lines = [
        f"# PMF vs the DeepMovie hybrid with each text encoder: {Path(args.data).name}, split `{args.split}`",
        "",
        f"- command: `{command}`",
        f"- date: {began:%Y-%m-%d %H:%M} UTC",
        f"- machine: {machine.describe(torch.device('cpu'))}; one torch thread per cell, {args.jobs} cells "
        "at once; the machine was shared with other work, so seconds are indicative",
        f"- data: {data}",
        f"- documents: {documents}",
        f"- {args.factors} factors{''.join(f'; {s}' for s in args.shared_set)}; at most {args.epochs} "
        f"iterations, patience {args.patience}; lambda "
        f"grids {args.reg} (PMF: lambda_U = lambda_V) and {args.hybrid_reg} (hybrids: "
        + (f"lambda_U from {args.hybrid_reg_user}" if args.hybrid_reg_user else "PMF's lambda_U")
        + ", own lambda_V) chosen on validation RMSE; test RMSE at the best-validation iteration, "
        "scored once",
        "",
        columns,
        "|---" * (columns.count("|") - 1) + "|",
    ]
    for name, ((values, _), s) in results.items():
        p = values["params"]
        delta = "" if name == "pmf" else f"{s[stopped] - pmf[stopped]:+.4f}"
        twin = ""
        if args.refit:
            versus = "" if name == "pmf" else f"{s['test_rmse'] - pmf['test_rmse']:+.4f}"
            twin = f"| {s['test_rmse']:.4f} | {versus} "
        label = name if name in ("bias", "pmf") else f"hybrid, {name}"
        lines.append(
            f"| {label} | {p.get('reg_user', 'default')} | {p.get('reg_item', 'default')} "
            f"| {s['valid_rmse']:.4f} | {s[stopped]:.4f} "
            f"| {delta} {twin}| {s['epochs']} ({s['best_epoch']}) "
            f"| {statistics.median(s['epoch_seconds']):.2f} "
            f"| {sum(s['epoch_seconds']):.0f} | {POSTER.get(name, '–') if ml_1m else '–'} |"
        )
    header = [bucket_label(lo, hi) for lo, hi in BUCKETS]
    twins = ", of the refit twins" if args.refit else ""
    counts = [n for _, n in buckets["pmf"]]
    lines += [
        "",
        f"## Test RMSE by item popularity (training ratings per item){twins} — plot: `{plot.name}`",
        "",
        "| model | " + " | ".join(f"{h} ({n:,} rows)" for h, n in zip(header, counts, strict=True)) + " |",
        "|---" * (len(header) + 1) + "|",
    ]
    for name, rows in buckets.items():
        lines.append(f"| {name} | " + " | ".join(f"{r:.4f}" for r, _ in rows) + " |")
    return lines


if __name__ == "__main__":
    main()
