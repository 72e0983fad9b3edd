"""Aggregate runs over seeds: one row per label, mean and sample standard deviation of each figure."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any

from deepmovie.bench.runner import Run, metric_of


@dataclass(frozen=True)
class Row:
    """One label's figures over its seeds (``std``: the sample standard deviation; None for one seed)."""

    label: str
    model: str
    source: str
    task: str
    metric: str  # the test figure that ranks this task: rmse, auc or ndcg@K
    mean: float | None
    std: float | None
    mae: float | None
    mae_std: float | None
    cold_test_rows: int
    n_train: int
    n_test: int
    fit_seconds: float
    fit_seconds_std: float | None
    seconds_per_epoch: float | None
    samples_per_second: float | None
    parameters: int | None
    device: str
    seeds: list[int]
    per_seed: list[float | None]
    split_hashes: list[str]
    others: dict[str, float]  # the other test figures (accuracy, argmax RMSE, log-loss ...), means

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Missing:
    """A requested entry that this installation cannot run, and why."""

    label: str
    model: str
    reason: str


def aggregate(runs: list[Run]) -> list[Row]:
    """Rows in the order labels first appear."""
    labels = list(dict.fromkeys(r.label for r in runs))
    return [_row([r for r in runs if r.label == label]) for label in labels]


def _row(runs: list[Run]) -> Row:
    first = runs[0].summary
    metric = metric_of(first)
    values = [r.summary.get(f"test_{metric}") for r in runs]
    mean, std = mean_std(values)
    mae, mae_std = mean_std([r.summary.get("test_mae") for r in runs])
    fit, fit_std = mean_std([r.summary["fit_seconds"] for r in runs])
    epochs = [s for r in runs for s in r.summary.get("epoch_seconds", [])]
    speeds = [r.summary.get("train_samples_per_second") for r in runs]
    return Row(
        label=runs[0].label,
        model=runs[0].model,
        source=runs[0].source,
        task=first.get("task", "rating"),
        metric=metric,
        mean=mean,
        std=std,
        mae=mae,
        mae_std=mae_std,
        cold_test_rows=int(first.get("cold_test_rows", 0)),
        n_train=int(first.get("n_train", 0)) + int(first.get("n_valid", 0)),
        n_test=int(first.get("n_test", 0)),
        fit_seconds=fit or 0.0,
        fit_seconds_std=fit_std,
        seconds_per_epoch=statistics.fmean(epochs) if epochs else None,
        samples_per_second=mean_std(speeds)[0],
        parameters=first.get("parameters"),
        device=first.get("device", "cpu"),
        seeds=[r.seed for r in runs],
        per_seed=values,
        split_hashes=sorted({r.summary.get("split_hash", "") for r in runs}),
        others=_others(runs, {f"test_{metric}", "test_mae"}),
    )


def _others(runs: list[Run], shown: set[str]) -> dict[str, float]:
    keys = [k for k, v in runs[0].summary.items() if k.startswith("test_") and isinstance(v, float)]
    means = {k.removeprefix("test_"): mean_std([r.summary.get(k) for r in runs])[0] for k in keys}
    return {k: v for k, v in means.items() if f"test_{k}" not in shown and v is not None}


def mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    present = [v for v in values if v is not None]
    if not present:
        return None, None
    return statistics.fmean(present), statistics.stdev(present) if len(present) > 1 else None
