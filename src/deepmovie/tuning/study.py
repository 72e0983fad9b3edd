"""Hyperparameter search with Optuna, judged on the validation rows carved from the training part.

Every trial trains through :func:`deepmovie.experiment.fit_valid`, which never scores the test rows:
a tuned figure is therefore an honest validation figure, and the test rows stay unseen until a run
of ``best.yaml``. Each epoch's validation figure feeds a median pruner; trials run in parallel
worker processes (one torch thread pool each, sized so they share the cores), all writing to one
SQLite study, so running the same command again continues the study where it stopped.

This module is the search only: what a finished study leaves behind is rendered by
:mod:`deepmovie.tuning.report` (``study.md``, ``best.yaml``) and :mod:`deepmovie.tuning.plots`
(``study.png``), which read the study and its summary and never run trials.
"""

from __future__ import annotations

import datetime
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import optuna
import torch

from deepmovie import machine
from deepmovie.config import RunConfig, build_config
from deepmovie.data.dataset import Dataset
from deepmovie.errors import DeepMovieError
from deepmovie.experiment import fit_valid, monitor, select_device, single_split
from deepmovie.files import write_text
from deepmovie.rundir import claim, differing
from deepmovie.splits import Split
from deepmovie.tuning.plots import plot_progress
from deepmovie.tuning.report import best_yaml, markdown
from deepmovie.tuning.spaces import Space, get_space

STUDY_DB = "study.db"
BEST = "best.yaml"
REPORT = "study.md"
PLOT = "study.png"
# The pruner waits for a few finished trials and epochs before it compares curves: early epochs of
# a slow learning rate look bad and are not.
PRUNE_AFTER_TRIALS = 5
PRUNE_AFTER_EPOCHS = 8


def tune(
    config: RunConfig,
    out: Path,
    trials: int,
    *,
    jobs: int = 1,
    study_name: str | None = None,
    storage: str | None = None,
    timeout: float | None = None,
    deadline: float | None = None,
    command: str | None = None,
    overwrite: bool = False,
    quiet: bool = True,
    data: tuple[Dataset, Split] | None = None,
    lr_scale: float = 1.0,
) -> dict[str, Any]:
    """Run ``trials`` more trials of ``config.model``'s search space; write ``best.yaml`` and
    ``study.md`` to ``out``. Returns the study's summary (best value, params, trial counts).

    ``out`` is new, empty or this study's folder (the study continues); ``overwrite`` takes any folder,
    deletes the other studies in its ``study.db`` and starts a study of another configuration afresh.
    ``timeout`` stops starting trials; ``deadline`` (a ``time.time()``) also cuts a running trial at its
    next epoch (pruned, its epochs' figures kept), so a time budget holds for slow trials too. ``data``
    is ``config``'s (dataset, split) when the caller has it already. ``lr_scale`` multiplies the
    space's learning rates, which are made for errors on a 1..5 scale (auto: 4 / the scale's width)."""
    space_of = get_space(config.model)  # an unknown model fails here, before any data is read
    if trials < 1 or jobs < 1:
        raise DeepMovieError(f"--trials {trials} and --jobs {jobs} must both be at least 1")
    if timeout is not None and timeout <= 0:
        raise DeepMovieError(f"--timeout {timeout:g}: must be a positive number of seconds")
    dataset, split = data or _one_split(config)
    goal, higher_is_better = monitor(config, dataset, split)
    if storage is not None:
        _usable(storage)  # before --out is claimed: opening a storage creates its tables
    held = claim(out, (STUDY_DB, BEST, REPORT), "a tuning folder", overwrite=overwrite)
    study_name = study_name or config.model
    if storage is None:
        storage = f"sqlite:///{out / STUDY_DB}"
        if held:
            _only(out, study_name, storage, overwrite)
    _verbosity(quiet)
    study = _open(config, study_name, storage, "maximize" if higher_is_better else "minimize", overwrite)
    done = len(study.trials)
    if done == 0 and _enqueue_start(study, config, space_of, lr_scale) and jobs > 1:
        # Workers started together would race for the one enqueued trial (two may run it, and the
        # second to finish fails): it runs here first, then the workers share the rest.
        _optimize(
            config.resolved(),
            study_name,
            storage,
            1,
            timeout,
            deadline,
            torch.get_num_threads(),
            config.seed,
            quiet,
            lr_scale,
            (dataset, split),
        )
        trials, done = trials - 1, 1
    shares = [trials // jobs + (w < trials % jobs) for w in range(jobs)]
    threads = max(1, torch.get_num_threads() // jobs)
    tasks = [
        (
            config.resolved(),
            study_name,
            storage,
            n,
            timeout,
            deadline,
            threads,
            config.seed + 1000 * done + w,
            quiet,
            lr_scale,
        )
        for w, n in enumerate(shares)
        if n
    ]
    if len(tasks) == 1:
        _optimize(*tasks[0], data=(dataset, split))
    elif tasks:
        with ProcessPoolExecutor(len(tasks), mp_context=multiprocessing.get_context("spawn")) as pool:
            for future in [pool.submit(_optimize, *task) for task in tasks]:
                future.result()
    study = optuna.load_study(study_name=study_name, storage=_storage(storage))
    summary = _summarize(study, config, goal, storage, command)
    if summary["best_value"] is None:
        raise DeepMovieError(f"study {study_name!r}: no trial finished ({summary['trials']}); see {storage}")
    write_text(out / BEST, best_yaml(study, config, summary))
    report = markdown(
        study, summary, prune_after_trials=PRUNE_AFTER_TRIALS, prune_after_epochs=PRUNE_AFTER_EPOCHS
    )
    write_text(out / REPORT, report)
    plot_progress(study, summary, out / PLOT)
    return summary


def _one_split(config: RunConfig) -> tuple[Dataset, Split]:
    return single_split(config, verb="tune", noun="tuning")


def _storage(url: str) -> optuna.storages.BaseStorage:
    """An RDB storage; SQLite waits for a busy file instead of failing when workers write at once."""
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except Exception as exc:  # SQLAlchemy raises many kinds for a bad URL or path: say which, once
        raise _unusable(url, exc) from None


def _usable(url: str) -> None:
    """Refuse a storage URL SQLAlchemy cannot parse or has no driver for, without connecting."""
    import sqlalchemy

    try:
        sqlalchemy.create_engine(url).dispose()
    except Exception as exc:
        raise _unusable(url, exc) from None


def _unusable(url: str, exc: Exception) -> DeepMovieError:
    return DeepMovieError(f"--storage {url}: cannot open ({str(exc).splitlines()[0]})")


def _only(out: Path, name: str, storage: str, overwrite: bool) -> None:
    """A folder's ``study.db`` holds one study, the one its reports are of: another name there is
    refused, or deleted with ``overwrite``."""
    others = [n for n in optuna.get_all_study_names(_storage(storage)) if n != name]
    if others and not overwrite:
        raise DeepMovieError(
            f"{out}: holds the study {others[0]!r}, not {name!r}; choose another --out, or pass "
            "--overwrite to replace it"
        )
    for other in others:
        optuna.delete_study(study_name=other, storage=_storage(storage))


def _open(config: RunConfig, name: str, storage: str, direction: str, overwrite: bool) -> optuna.Study:
    """Create the study, or continue it when it exists and was started with the same configuration;
    one started with another is refused, or started afresh with ``overwrite``."""
    study = optuna.create_study(
        study_name=name,
        storage=_storage(storage),
        direction=direction,
        load_if_exists=True,
        pruner=_pruner(),
    )
    started = study.user_attrs.get("config")
    changed = differing(started, config.resolved()) if started is not None else []
    if changed and overwrite:
        optuna.delete_study(study_name=name, storage=_storage(storage))
        return _open(config, name, storage, direction, overwrite=False)
    if changed:
        raise DeepMovieError(
            f"study {name!r} in {storage} was started with another configuration (differs in "
            f"{', '.join(changed)}); run the same command to continue it, choose another --study, "
            "or pass --overwrite to start it afresh"
        )
    if started is None:
        study.set_user_attr("config", config.resolved())
    return study


def _enqueue_start(study: optuna.Study, config: RunConfig, space_of: Space, lr_scale: float = 1.0) -> bool:
    """Make trial 0 the config being tuned (its values of the searched parameters, where the space
    holds them), so a search started from a hand-tuned preset can only match or improve on it.
    Whether a trial was enqueued."""
    probe = optuna.create_study().ask()  # in memory: only to learn the space's names and ranges
    space_of(probe)
    base = config.model_params().model_dump()
    if "lr" in base:
        base["lr"] /= lr_scale  # in the space's units
    start = {
        name: base[name]
        for name, distribution in probe.distributions.items()
        if name in base and _within(distribution, base[name])
    }
    if start:
        study.enqueue_trial(start)
    return bool(start)


def _within(distribution: optuna.distributions.BaseDistribution, value: Any) -> bool:
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return value in distribution.choices
    return distribution.low <= value <= distribution.high


def _pruner() -> optuna.pruners.BasePruner:
    return optuna.pruners.MedianPruner(n_startup_trials=PRUNE_AFTER_TRIALS, n_warmup_steps=PRUNE_AFTER_EPOCHS)


def _verbosity(quiet: bool) -> None:
    """Quiet: not even a failed trial's traceback (the leaderboard and study report say why it failed)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR if quiet else optuna.logging.INFO)


def _optimize(
    resolved: dict[str, Any],
    study_name: str,
    storage: str,
    trials: int,
    timeout: float | None,
    deadline: float | None,
    threads: int,
    seed: int,
    quiet: bool,
    lr_scale: float = 1.0,
    data: tuple[Dataset, Split] | None = None,
) -> None:
    """One worker: ``trials`` trials of the shared study (its own process unless ``data`` is given)."""
    config = build_config(resolved)
    if data is None:  # a spawned worker: its own data and its share of the cores
        torch.set_num_threads(threads)
        _verbosity(quiet)
        data = _one_split(config)
    dataset, split = data
    device = select_device(config.device)
    space_of = get_space(config.model)
    study = optuna.load_study(
        study_name=study_name,
        storage=_storage(storage),
        sampler=optuna.samplers.TPESampler(seed=seed, constant_liar=True),
        pruner=_pruner(),
    )

    def objective(trial: optuna.Trial) -> float:
        searched = space_of(trial)
        if "lr" in searched:
            searched["lr"] *= lr_scale
        params = {**config.params, **searched}
        trial.set_user_attr("params", params)

        def report(epoch: int, score: float) -> None:
            trial.report(score, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"epoch {epoch}: valid {score:.4f} below the median")
            if deadline is not None and time.time() > deadline:
                raise optuna.TrialPruned(f"epoch {epoch}: the time budget is spent")

        try:
            fit = fit_valid(config.model_copy(update={"params": params}), dataset, split, device, report)
        except DeepMovieError as exc:  # kept with the trial: a leaderboard says why it failed
            trial.set_user_attr("error", str(exc))
            raise
        trial.set_user_attr("best_epoch", fit.best_epoch)
        return fit.best_valid

    # A diverged trial (non-finite loss) is a failed trial, not the end of the study.
    study.optimize(objective, n_trials=trials, timeout=timeout, catch=(DeepMovieError,))


def _summarize(
    study: optuna.Study, config: RunConfig, goal: str, storage: str, command: str | None
) -> dict[str, Any]:
    states = optuna.trial.TrialState
    best = study.best_trial if any(t.state == states.COMPLETE for t in study.trials) else None
    return {
        "study": study.study_name,
        "storage": storage,
        "model": config.model,
        "data": config.data,
        "split": "file" if config.test_file else config.split,
        "seed": config.seed,
        "monitor": f"valid_{goal}",
        "direction": study.direction.name.lower(),
        "best_value": best.value if best else None,
        "best_trial": best.number if best else None,
        "best_epoch": best.user_attrs.get("best_epoch") if best else None,
        "best_params": best.params if best else None,  # as sampled; best.yaml has the full set
        "trials": {s.name.lower(): sum(t.state == s for t in study.trials) for s in states},
        "command": command,
        "machine": machine.describe(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
