"""Tuning: trials judged on validation rows only (never the test rows), pruned by the median of
per-epoch figures, a resumable SQLite study, and a best.yaml that ``deepmovie train`` runs as is."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest

from conftest import write_ratings
from deepmovie import evaluation as evaluate
from deepmovie import experiment
from deepmovie.config import RunConfig, build_config
from deepmovie.errors import DeepMovieError
from deepmovie.evaluation import ColdFallback, Evaluator
from deepmovie.models import MODELS
from deepmovie.training.trainer import Trainer
from deepmovie.tuning import study as tuning
from deepmovie.tuning import tune
from deepmovie.tuning.spaces import SPACES

TRIALS = 8


class Pruned(Exception):
    """What a tuner's per-epoch callback raises to stop a trial."""


def deepmovie(*args: object) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "deepmovie", *map(str, args), "-q"]
    return subprocess.run(command, capture_output=True, text=True, timeout=240)


def tiny_config(folder: Path, **params: object) -> RunConfig:
    data = write_ratings(folder / "ratings.csv", n_users=60, n_items=50, density=0.35)
    return build_config({"model": "biased-mf", "data": str(data), "params": {"epochs": 12, **params}})


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """One study, with every row the evaluator scores recorded and the test evaluation booby-trapped."""
    folder = tmp_path_factory.mktemp("tune")
    config = tiny_config(folder)
    scored: list[np.ndarray] = []
    score = Evaluator.__call__

    def recording(self, model, data, seen):
        scored.append(data.pair_keys())
        return score(self, model, data, seen)

    def forbidden(*args, **kwargs):
        raise AssertionError("a tuning trial ran a test evaluation")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Evaluator, "__call__", recording)
        patch.setattr(experiment, "run", forbidden)
        patch.setattr(experiment, "_run_fold", forbidden)
        patch.setattr(evaluate, "rank", forbidden)
        patch.setattr(tuning, "PRUNE_AFTER_TRIALS", 2)  # prune within a few trials of tiny data
        patch.setattr(tuning, "PRUNE_AFTER_EPOCHS", 2)
        summary = tune(config, folder / "out", TRIALS)
    return config, folder / "out", summary, scored


def test_trials_score_validation_rows_and_never_the_test_rows(tuned):
    config, _, _, scored = tuned
    _, [split] = experiment.prepare(config)
    seen = np.concatenate(scored)
    assert len(scored) >= TRIALS  # one evaluation per epoch of every trial
    assert set(seen) <= set(split.valid.pair_keys())
    assert not set(seen) & set(split.test.pair_keys())


def test_study_counts_trials_and_prunes_by_the_median(tuned):
    _, out, summary, _ = tuned
    counts = summary["trials"]
    assert counts["complete"] + counts["pruned"] == TRIALS
    assert counts["pruned"] >= 1
    report = (out / "study.md").read_text()
    assert f"{summary['best_value']:.4f}" in report
    assert f"{counts['pruned']} pruned" in report
    assert report.count("\n| ") - 1 == min(counts["complete"], 10)  # header + one row per top trial


def test_the_first_trial_is_the_config_being_tuned(tuned):
    config, _, summary, _ = tuned
    first = optuna.load_study(study_name=summary["study"], storage=summary["storage"]).trials[0]
    defaults = config.model_params()
    assert first.params == {name: getattr(defaults, name) for name in first.params}
    assert set(first.params) == {"factors", "lr", "reg_user", "reg_item", "reg_bias"}


def test_learning_rates_scale_with_lr_scale_and_the_start_stays_the_config(tmp_path):
    """auto on a 1..100 scale: the space's steps (made for 1..5 errors) shrink, or every trial diverges."""
    config = tiny_config(tmp_path, epochs=2, lr=0.0005)  # 0.005 in the space's units at lr_scale 0.1
    summary = tune(config, tmp_path / "out", 4, lr_scale=0.1)
    trials = optuna.load_study(study_name=summary["study"], storage=summary["storage"]).trials
    ran = [t.user_attrs["params"]["lr"] for t in trials]
    assert ran[0] == pytest.approx(0.0005) and trials[0].params["lr"] == pytest.approx(0.005)
    assert all(0.0001 - 1e-12 <= lr <= 0.002 + 1e-12 for lr in ran)  # the space's 0.001..0.02, times 0.1
    assert all(r == pytest.approx(t.params["lr"] * 0.1) for r, t in zip(ran, trials, strict=True))


def test_best_yaml_trains_as_is_and_reproduces_the_best_valid_figure(tuned, tmp_path):
    _, out, summary, _ = tuned
    result = deepmovie("train", "--config", out / "best.yaml", "--device", "cpu", "--out", tmp_path / "run")
    assert result.returncode == 0, result.stderr
    run = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert run["config"]["params"]["epochs"] == summary["best_epoch"]
    assert run["best_epoch"] == summary["best_epoch"]
    assert run["valid_rmse"] == pytest.approx(summary["best_value"], rel=1e-4)


@pytest.mark.slow
def test_rerunning_continues_the_study_in_parallel_workers(tuned, tmp_path):
    config, out, summary, _ = tuned
    copy = shutil.copytree(out, tmp_path / "out")
    again = tune(config, copy, trials=2, jobs=2)
    assert sum(again["trials"].values()) == sum(summary["trials"].values()) + 2
    with pytest.raises(DeepMovieError, match="another configuration"):
        tune(config.model_copy(update={"seed": 1}), copy, trials=1)


def test_trainer_reports_each_epoch_and_a_raise_stops_it(tmp_path):
    config = tiny_config(tmp_path, epochs=6, patience=0)
    dataset, [split] = experiment.prepare(config)
    model = experiment.build_model(config, dataset, split, experiment.select_device("cpu"))
    judge = Evaluator(ColdFallback.fit(split.train), dataset.scale)
    seen: list[tuple[int, float]] = []

    def on_epoch(epoch: int, score: float) -> None:
        seen.append((epoch, score))
        if epoch == 3:
            raise Pruned

    with pytest.raises(Pruned):
        Trainer(quiet=True).fit(model, split.train, split.valid, judge, 0, on_epoch=on_epoch)
    assert [e for e, _ in seen] == [1, 2, 3]
    assert all(0 < s < 5 for _, s in seen)


@pytest.mark.parametrize(
    ("change", "trials", "message"),
    [
        ({}, 0, "--trials 0"),
        ({"model": "mf"}, 1, "no search space for model 'mf'"),
        ({"valid_fraction": 0.0}, 1, "needs validation rows"),
        ({"split": "kfold:3"}, 1, "tune on one"),
    ],
)
def test_bad_input_is_refused_before_any_trial(tmp_path, change, trials, message):
    config = build_config({**tiny_config(tmp_path).model_dump(), **change, "params": {}})
    with pytest.raises(DeepMovieError, match=message):
        tune(config, tmp_path / "out", trials)
    assert not (tmp_path / "out").exists()


def test_cli_error_is_one_line_exit_2(tmp_path):
    data = write_ratings(tmp_path / "ratings.csv")
    result = deepmovie("tune", "mf", "--data", data, "--trials", "2", "--out", tmp_path / "out")
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: no search space for model 'mf' (tunable: ")


@pytest.mark.parametrize("name", sorted(SPACES))
def test_every_space_proposes_settings_its_model_accepts(name):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        params = SPACES[name](study.ask())
        assert params and MODELS.get(name).Params(**params)  # pydantic refuses a name or value it lacks
