"""The text a finished study leaves behind: ``study.md`` (settings, counts, top trials) and ``best.yaml``.

Rendering only, kept apart from the search in :mod:`deepmovie.tuning.study` so the wording and the
table change without touching how trials run; each function takes the study and its summary and
returns text, and the caller writes it.
"""

from __future__ import annotations

import os
from typing import Any

import optuna

from deepmovie.config import RunConfig, build_config, dump_yaml
from deepmovie.rundir import LIMITS

TOP = 10


def best_yaml(study: optuna.Study, config: RunConfig, summary: dict[str, Any]) -> str:
    """The full resolved config of the best trial, for ``deepmovie train --config``: its params and
    its best epoch as the epoch budget, so a run of it stops where the trial peaked. A limit of this
    machine's (``max_memory``) is left to the machine that runs the preset."""
    params = {**study.best_trial.user_attrs["params"], "epochs": summary["best_epoch"]}
    resolved = build_config({**config.model_dump(exclude=LIMITS), "params": params}).resolved()
    n = summary["trials"]
    header = (
        f"# Tuned by `deepmovie tune`: study {summary['study']!r}, best of {n['complete']} complete trials "
        f"({n['pruned']} pruned): trial {summary['best_trial']},\n"
        f"# best {summary['monitor']} {summary['best_value']:.4f} at epoch {summary['best_epoch']}, "
        "scored on the validation part of the training rows only (never the test rows).\n"
    )
    return header + dump_yaml(resolved)


def markdown(
    study: optuna.Study, summary: dict[str, Any], *, prune_after_trials: int, prune_after_epochs: int
) -> str:
    """``study.md``: how the study was run, its best trial, and the top :data:`TOP` complete trials."""
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    ranked = sorted(complete, key=lambda t: t.value, reverse=summary["direction"] == "maximize")[:TOP]
    counts = ", ".join(f"{v} {k}" for k, v in summary["trials"].items() if v)
    lines = [
        f"# Tuning {summary['model']} on {summary['data']} ({summary['split']}, seed {summary['seed']})",
        "",
        f"- command: `{summary['command'] or 'deepmovie.tuning.tune (Python API)'}`",
        f"- date: {summary['date']}",
        f"- machine: {summary['machine']}; {os.environ.get('OMP_NUM_THREADS', 'default')} OMP threads",
        f"- study: {summary['study']!r} in `{summary['storage']}` ({counts})",
        f"- objective: best {summary['monitor']} of a trial ({summary['direction']}), on the validation "
        "part of the training rows; the test rows are never scored while tuning",
        f"- pruning: median of earlier trials at the same epoch, after {prune_after_trials} trials and "
        f"{prune_after_epochs} epochs",
        f"- best: trial {summary['best_trial']}, {summary['monitor']} **{summary['best_value']:.4f}** "
        f"at epoch {summary['best_epoch']}",
        f"- best params: `{summary['best_params']}`",
        "",
        f"| rank | trial | {summary['monitor']} | best epoch | seconds | sampled |",
        "|---|---|---|---|---|---|",
    ]
    for rank, trial in enumerate(ranked, start=1):
        seconds = trial.duration.total_seconds() if trial.duration else float("nan")
        sampled = ", ".join(f"{k}={_short(v)}" for k, v in trial.params.items())
        lines.append(
            f"| {rank} | {trial.number} | {trial.value:.4f} | {trial.user_attrs.get('best_epoch')} "
            f"| {seconds:.1f} | {sampled} |"
        )
    return "\n".join(lines) + "\n"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
