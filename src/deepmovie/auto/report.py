"""What a finished ``deepmovie auto`` leaves to read: the leaderboard, ``auto.md`` and a plot."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from deepmovie.files import write_figure

SHOWN_TRIALS = 30


def leaderboard_rows(trials: list[dict[str, Any]], higher_is_better: bool) -> list[dict[str, Any]]:
    """Every trial, the best validation figure first; trials without one (failed) last."""
    sign = -1.0 if higher_is_better else 1.0
    return sorted(trials, key=lambda t: (t["value"] is None, sign * (t["value"] or 0.0)))


def markdown(summary: dict[str, Any], state: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    goal = summary["monitor"] or "figure"
    shown = [r for r in rows if r["value"] is not None]
    load = ", ".join(f"{x:.2f}" for x in summary["load_average"])
    lines = [
        f"# deepmovie auto on {summary['data']} ({summary['split']}, seed {summary['seed']}, "
        f"task {summary['task']})",
        "",
        f"- command: `{summary['command'] or 'deepmovie.auto (Python API)'}`",
        f"- date: {summary['date']}; machine: {summary['machine']}; load average at the end: {load}",
        f"- budget {summary['budget_seconds']:.0f} s; wall time {summary['wall_seconds']:.0f} s "
        f"({summary['wall_seconds'] / summary['budget_seconds']:.0%} of the budget)",
        f"- data: {_profile_line(summary['profile'])}",
        f"- every trial judged on validation {goal} (rows carved from the training part); the test rows "
        "were scored once, by the finalists and the result",
        "",
        "## Candidates",
        "",
    ]
    lines += [f"- `{c['model']}`: {c['why']}" for c in state.get("candidates", [])]
    lines += [f"- skipped {line}" for line in summary["skipped"]]
    lines += ["", "## Rounds (successive halving)", ""]
    for r in state.get("rounds", []):
        lines.append(
            f"- round {r['round']}: {', '.join(r['searched'])} ({r['slot_seconds']:.0f} s each) -> kept "
            f"{', '.join(r['kept'])}"
        )
    lines += ["", "## Finalists (trained once more with their best settings)", ""]
    lines += [
        "| model | valid | test RMSE | refit twin's test RMSE | test NDCG@10 | fit s | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in summary["finalists"]:
        note = "; ".join(f[k] for k in ("skipped", "cut", "twin_skipped") if f.get(k))
        lines.append(
            f"| {f['model']} | {_num(f.get('valid'))} | {_num(f.get('test_rmse'))} | "
            f"{_num(f.get('twin_test_rmse'))} | {_num(f.get('test_ndcg@10'))} | "
            f"{_num(f.get('fit_seconds'), 1)} | {note} |"
        )
    result = summary["result"]
    lines += ["", "## Result", ""]
    if result["kind"].startswith("blend"):
        weights = ", ".join(f"{m} {w:+.3f}" for m, w in result["weights"].items())
        what = "Blend of the finalists" + (
            ", test rows predicted by their refit twins" if "twins" in result["kind"] else ""
        )
        lines.append(
            f"{what} (ridge on validation rows; intercept {result['intercept']:+.4f}; "
            f"weights {weights}): valid RMSE {result['valid_rmse']:.4f}, **test RMSE "
            f"{result['test_rmse']:.4f}**, test MAE {result['test_mae']:.4f}. Servable: `deepmovie serve "
            f"{result['run']}`."
        )
    else:
        figure = "test RMSE" if "test_rmse" in result else "test NDCG@10"
        lines.append(
            f"Best single model: `{result['run']}`, **{figure} "
            f"{_num(result.get('test_rmse', result.get('test_ndcg@10')))}**. Servable: `deepmovie serve "
            f"{result['run']}`."
        )
    lines += [
        "",
        f"## Leaderboard (best {min(SHOWN_TRIALS, len(shown))} of {len(rows)} trials; all in "
        "`leaderboard.md` and `leaderboard.json`)",
        "",
        *trial_table(shown[:SHOWN_TRIALS], goal),
    ]
    return "\n".join(lines) + "\n"


def leaderboard_markdown(rows: list[dict[str, Any]], goal: str) -> str:
    return "\n".join(["# Leaderboard: every trial, best first", "", *trial_table(rows, goal)]) + "\n"


def trial_table(rows: list[dict[str, Any]], goal: str) -> list[str]:
    """Markdown rows: model, trial, state, validation figure, best epoch, seconds and the searched
    settings (the full settings are in ``leaderboard.json``)."""
    lines = [
        f"| model | trial | state | valid {goal} | best epoch | seconds | searched settings | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        searched = ", ".join(f"{k}={_short(v)}" for k, v in sorted((r.get("searched") or {}).items()))
        epoch, note = r.get("best_epoch") or "", r.get("note") or ""
        lines.append(
            f"| {r['model']} | {r['trial']} | {r['state']} | {_num(r['value'])} | {epoch} | "
            f"{_num(r.get('seconds'), 1)} | {searched} | {note} |"
        )
    return lines


def plot_leaderboard(
    rows: list[dict[str, Any]], goal: str, path: Path, higher_is_better: bool = False
) -> None:
    """Each candidate's best validation figure so far, by trial: what more time bought. The axis spans
    the good part (early, diverging trials would flatten every curve)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4))
    axes = figure.subplots()
    best = max if higher_is_better else min
    shown = []
    for model in sorted({r["model"] for r in rows}):
        points = sorted(
            (r["trial"], r["value"])
            for r in rows
            if r["model"] == model and r["value"] is not None and math.isfinite(r["value"])
        )
        if not points:
            continue
        trials, values = zip(*points, strict=True)
        running = [best(values[: n + 1]) for n in range(len(values))]
        axes.step(trials, running, where="post", marker="." if len(trials) < 30 else None, label=model)
        shown += running
    if shown:
        low, high = min(shown), sorted(shown)[int(0.9 * (len(shown) - 1))]
        pad = 0.05 * (high - low or abs(high) or 1.0)
        axes.set_ylim(low - pad, high + pad)
    axes.set_xlabel("trial")
    axes.set_ylabel(f"best validation {goal} so far")
    axes.legend(fontsize="small")
    figure.tight_layout()
    write_figure(path, figure, dpi=100)


def _profile_line(p: dict[str, Any]) -> str:
    return (
        f"{p['rows']:,} training ratings, {p['users']:,} users, {p['items']:,} items, density "
        f"{p['density']:.3%}, scale {p['low']:g}..{p['high']:g} (step {p['step']:g})"
    )


def _num(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
