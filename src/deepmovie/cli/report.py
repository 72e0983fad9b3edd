"""Plain-text result tables for the terminal."""

from __future__ import annotations

from typing import Any

import typer


def _fmt(value: Any, spec: str = ".4f") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return format(value, spec)
    return f"{value:,}" if isinstance(value, int) else str(value)


def print_summary(summary: dict[str, Any]) -> None:
    """One results table per run: what was trained on what, and how well and how fast."""
    rows = [
        ("model", summary["model"]),
        ("data", summary["dataset"]),
        ("split", f"{summary['split']} (seed {summary['seed']}, hash {summary['split_hash'][:16]})"),
        (
            "train / valid / test rows",
            f"{summary['n_train']:,} / {summary['n_valid']:,} / {summary['n_test']:,}",
        ),
        *_test_rows(summary),
        (
            f"valid {_label(summary['monitor'])} (best epoch)",
            f"{_fmt(summary['valid_' + summary['monitor']])} (epoch {summary['best_epoch']})",
        ),
        ("cold test rows", f"{summary['cold_test_rows']:,} ({summary['cold_policy']})"),
        ("epochs", f"{summary['epochs']} ({summary['stopped_because']})"),
        ("fit seconds", _fmt(summary["fit_seconds"], ".2f")),
        ("train samples/s", _fmt(summary["train_samples_per_second"], ",.0f")),
        ("device", summary["device"]),
    ]
    for name, value in (summary.get("ranking") or {}).items():
        rows.append((f"test {name}", _fmt(value)))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        typer.echo(f"{key:<{width}}  {value}")


def _test_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """Every test figure the run produced (RMSE/MAE, AUC, HR/NDCG, accuracy...), ± std over folds."""
    rows = []
    for key, value in summary.items():
        if not key.startswith("test_") or key.endswith("_std") or value is None:
            continue
        text = _fmt(value)
        if f"{key}_std" in summary:
            text += f" ± {summary[key + '_std']:.4f}"
        rows.append((f"test {_label(key.removeprefix('test_'))}", text))
    return rows


def _label(metric: str) -> str:
    """``rmse`` -> ``RMSE``; ranking figures such as ``ndcg@10`` stay as they are."""
    return metric.upper() if metric in ("rmse", "mae", "auc") else metric
