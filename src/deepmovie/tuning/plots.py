"""The PNG plot of a finished study (matplotlib, Agg: no display needed).

Kept apart from the search in :mod:`deepmovie.tuning.study`; matplotlib is imported only when a plot
is drawn, so importing :mod:`deepmovie.tuning` neither loads it nor switches its backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna

from deepmovie.files import write_figure


def plot_progress(study: optuna.Study, summary: dict[str, Any], path: Path) -> None:
    """Each finished trial's figure and the best so far, by trial number: is the search still gaining?"""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    numbers = [t.number for t in complete]
    values = [t.value for t in complete]
    best = max if summary["direction"] == "maximize" else min
    running = [best(values[: n + 1]) for n in range(len(values))]
    figure, axes = plt.subplots(figsize=(6, 3.5))
    axes.scatter(numbers, values, s=14, label="complete trial")
    axes.step(numbers, running, where="post", color="black", label="best so far")
    axes.set(xlabel="trial", ylabel=summary["monitor"], title=f"{summary['model']} on {summary['data']}")
    axes.legend()
    figure.tight_layout()
    write_figure(path, figure, dpi=100)
    plt.close(figure)
