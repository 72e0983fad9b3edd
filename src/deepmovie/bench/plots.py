"""PNG plots of a bench (matplotlib, Agg: no display needed): learning curves, test RMSE, s/epoch."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from deepmovie.bench.results import Row
from deepmovie.bench.runner import Run
from deepmovie.files import write_figure
from deepmovie.rundir import METRICS


def write_plots(out: Path, rows: list[Row], runs: list[Run]) -> list[str]:
    """Write every plot there is data for; returns their file names."""
    names = []
    monitors = dict.fromkeys(r.summary.get("monitor") for r in runs if r.source == "deepmovie")
    for monitor in monitors:
        if monitor is None:
            continue
        name = "learning-curves.png" if monitor == "rmse" else f"learning-curves-{monitor}.png"
        if _curves(out / name, [r for r in runs if r.summary.get("monitor") == monitor], monitor):
            names.append(name)
    rated = [r for r in rows if r.metric == "rmse" and r.mean is not None]
    if rated:
        errors = [r.std or 0.0 for r in rated]  # one seed: no spread to draw
        _bars(out / "test-rmse.png", rated, [r.mean for r in rated], errors, "test RMSE")
        names.append("test-rmse.png")
    timed = [r for r in rows if r.seconds_per_epoch is not None]
    if timed:
        _bars(out / "seconds-per-epoch.png", timed, [r.seconds_per_epoch for r in timed], None, "s / epoch")
        names.append("seconds-per-epoch.png")
    return names


def epoch_history(run_dir: Path) -> list[dict]:
    """The per-epoch records of a run (of its first fold for a multi-fold split)."""
    path = run_dir / METRICS
    if not path.is_file():
        path = next(iter(sorted(run_dir.glob(f"fold-*/{METRICS}"))), path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _curves(path: Path, runs: list[Run], monitor: str) -> bool:
    key = f"valid_{monitor}"
    fig, ax = plt.subplots(figsize=(8, 5))
    colours = {label: f"C{i}" for i, label in enumerate(dict.fromkeys(r.label for r in runs))}
    drawn = set()
    for run in runs:
        points = [(h["epoch"], h[key]) for h in epoch_history(run.run_dir) if h.get(key) is not None]
        if not points:
            continue
        epochs, values = zip(*points, strict=True)
        first = run.label not in drawn
        ax.plot(epochs, values, color=colours[run.label], alpha=0.8, label=run.label if first else None)
        drawn.add(run.label)
    if drawn:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(f"validation {monitor.upper()}")
        ax.set_title(f"Learning curves (one line per seed), validation {monitor.upper()}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        fig.tight_layout()
        write_figure(path, fig, dpi=110)
    plt.close(fig)
    return bool(drawn)


def _bars(path: Path, rows: list[Row], values: list, errors: list | None, ylabel: str) -> None:
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(rows) + 2), 4.5))
    colours = ["C1" if r.source != "deepmovie" else "C0" for r in rows]
    ax.bar(range(len(rows)), values, yerr=errors, capsize=4, color=colours)
    shown = "{:.4f}" if errors is not None else "{:.3g}"  # RMSEs to 4 decimals, seconds to 3 digits
    ticks = [f"{r.label}\n{shown.format(v)}" for r, v in zip(rows, values, strict=True)]
    ax.set_xticks(range(len(rows)), ticks, rotation=30, ha="right", fontsize="small")
    ax.set_ylabel(ylabel)
    if errors is not None:  # RMSEs differ in the second decimal: start the axis near them
        low = min(v - (e or 0) for v, e in zip(values, errors, strict=True))
        high = max(v + (e or 0) for v, e in zip(values, errors, strict=True))
        ax.set_ylim(max(0.0, low - 0.1 * (high - low + 0.01)), high + 0.1 * (high - low + 0.01))
    with_peers = errors is not None and any(r.source != "deepmovie" for r in rows)
    ax.set_title(f"{ylabel} (blue: DeepMovie, orange: peers)" if with_peers else ylabel)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    write_figure(path, fig, dpi=110)
    plt.close(fig)
