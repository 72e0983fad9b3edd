"""The training engine: determinism, early stopping, stop rules, checkpoints, resume after a real kill."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from conftest import write_ratings
from deepmovie.config import build_config
from deepmovie.data.interactions import Interactions, RatingScale
from deepmovie.errors import DeepMovieError
from deepmovie.evaluation import ColdFallback, Evaluator
from deepmovie.experiment import run
from deepmovie.models.base import DataInfo, Model, ModelParams
from deepmovie.rundir import CHECKPOINT
from deepmovie.training.checkpoint import load_weights
from deepmovie.training.trainer import Trainer


@pytest.fixture
def ratings_csv(tmp_path):
    return write_ratings(tmp_path / "ratings.csv", n_users=60, n_items=80, density=0.4)


def train(model: str, data, **params):
    config = build_config({"model": model, "data": str(data), "split": "random:0.2", "params": params})
    return run(config, None, quiet=True)


def test_same_seed_same_result_and_other_seed_differs(ratings_csv):
    a = train("biased-mf", ratings_csv, epochs=5, patience=0)
    b = train("biased-mf", ratings_csv, epochs=5, patience=0)
    assert a["test_rmse"] == b["test_rmse"]
    config = build_config(
        {
            "model": "biased-mf",
            "data": str(ratings_csv),
            "split": "random:0.2",
            "seed": 1,
            "params": {"epochs": 5, "patience": 0},
        }
    )
    assert run(config, None, quiet=True)["test_rmse"] != a["test_rmse"]


class Scripted(Model):
    """A fake model whose per-epoch losses and weights are scripted, to test the loop itself."""

    name = "scripted"

    def __init__(self, params: ModelParams, info: DataInfo, losses: list[float], values: list[float]):
        super().__init__(params, info)
        self.value = torch.nn.Parameter(torch.zeros(()))
        self.losses, self.values = losses, values

    def train_epoch(self, epoch: int) -> float:
        with torch.no_grad():
            self.value.fill_(self.values[epoch - 1])
        return self.losses[epoch - 1]

    def predict(self, users, items):
        return self.value.expand(len(users))


def scripted(tmp_path, losses, values, **params):
    info = DataInfo(2, 2, RatingScale(0, 10), 0.0)
    data = Interactions(np.array([0, 1]), np.array([0, 1]), np.array([3.0, 3.0], dtype=np.float32), 2, 2)
    model = Scripted(ModelParams(**params), info, losses, values)
    trainer = Trainer(tmp_path, quiet=True)
    judge = Evaluator(ColdFallback.fit(data), info.scale)
    return model, lambda: trainer.fit(model, data, data, judge, seed=0)


def test_early_stopping_restores_the_best_weights(tmp_path):
    # valid RMSE = |value - 3|: best at epoch 2, then worse for `patience` epochs.
    model, fit = scripted(tmp_path, [1.0] * 6, [1.0, 2.9, 1.0, 0.0, 5.0, 6.0], epochs=6, patience=2)
    result = fit()
    assert result.best_epoch == 2 and len(result.history) == 4
    assert "2 epochs" in result.stopped_because
    assert model.value.item() == pytest.approx(2.9)


def test_relative_change_stop_rule(tmp_path):
    _, fit = scripted(tmp_path, [1.0] * 5, [1.0, 2.0, 2.001, 2.5, 2.6], epochs=5, patience=0, tol=1e-3)
    result = fit()
    assert len(result.history) == 3 and "tol" in result.stopped_because


def test_past_its_deadline_a_fit_starts_no_epoch_and_keeps_its_best(tmp_path, monkeypatch):
    """A budget's deadline (auto's finalists on a machine slower than their trials): stop, keep the best."""
    model, _ = scripted(tmp_path, [1.0] * 5, [1.0, 2.9, 2.0, 2.5, 2.6], epochs=5, patience=0)
    epochs_done: list[int] = []
    scripted_epoch = model.train_epoch

    def train_epoch(epoch: int) -> float:
        epochs_done.append(epoch)
        return scripted_epoch(epoch)

    model.train_epoch = train_epoch
    monkeypatch.setattr(time, "time", lambda: 10.0 if len(epochs_done) >= 3 else 0.0)  # slow from epoch 3
    data = Interactions(np.array([0, 1]), np.array([0, 1]), np.array([3.0, 3.0], dtype=np.float32), 2, 2)
    judge = Evaluator(ColdFallback.fit(data), RatingScale(0, 10))
    result = Trainer(tmp_path, quiet=True).fit(model, data, data, judge, seed=0, until=5.0)
    assert len(result.history) == 3 and result.stopped_because == "out of time"
    assert result.best_epoch == 2 and model.value.item() == pytest.approx(2.9)


def test_non_finite_loss_stops_with_advice_and_keeps_last_good_checkpoint(tmp_path):
    _, fit = scripted(tmp_path, [1.0, 1.0, math.nan], [1.0, 2.0, 3.0], epochs=3, patience=0)
    with pytest.raises(DeepMovieError, match="learning rate"):
        fit()
    assert load_weights(tmp_path / CHECKPOINT)["epoch"] == 2


@pytest.mark.slow
def test_kill_and_resume_matches_an_uninterrupted_run(tmp_path):
    """A real SIGKILL mid-training, then --resume: same final metrics as one uninterrupted run."""
    data = write_ratings(tmp_path / "big.csv", n_users=300, n_items=200, density=0.3)
    args = [
        "train",
        "mf",
        "--data",
        str(data),
        "--split",
        "random:0.2",
        "--quiet",
        "--set",
        "epochs=12",
        "--set",
        "patience=0",
        "--set",
        "batch_size=128",
        "--set",
        "optimizer=adam",
        "--set",
        "lr=0.01",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    whole = tmp_path / "whole"
    subprocess.run(
        [sys.executable, "-m", "deepmovie", *args, "--out", str(whole)],
        check=True,
        env=env,
        capture_output=True,
        timeout=300,
    )
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "deepmovie", *args, "--out", str(killed)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        lines = (
            (killed / "metrics.jsonl").read_text().splitlines() if (killed / "metrics.jsonl").exists() else []
        )
        if len(lines) >= 2 or process.poll() is not None:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    done = len((killed / "metrics.jsonl").read_text().splitlines())
    assert 0 < done < 12, "the kill should land mid-run"
    assert not (killed / "summary.json").exists()
    subprocess.run(
        [sys.executable, "-m", "deepmovie", "train", "--resume", str(killed), "--quiet"],
        check=True,
        env=env,
        capture_output=True,
        timeout=300,
    )
    a = json.loads((whole / "summary.json").read_text())
    b = json.loads((killed / "summary.json").read_text())
    assert b["epochs"] == a["epochs"] == 12
    assert b["test_rmse"] == a["test_rmse"] and b["valid_rmse"] == a["valid_rmse"]
    losses = [json.loads(line)["train_loss"] for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert losses == [
        json.loads(line)["train_loss"] for line in (whole / "metrics.jsonl").read_text().splitlines()
    ]


def test_resume_refuses_a_folder_without_a_run(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "deepmovie", "train", "--resume", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and result.stderr.startswith("error:") and "Traceback" not in result.stderr


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adagrad"])
def test_each_optimizer_learns(ratings_csv, optimizer):
    lr = {"sgd": 0.01, "adam": 0.01, "adagrad": 0.1}[optimizer]
    result = train("biased-mf", ratings_csv, optimizer=optimizer, lr=lr, epochs=30, patience=0)
    baseline = train("global-mean", ratings_csv)
    assert result["test_rmse"] < baseline["test_rmse"] - 0.05


def test_sparse_and_dense_gradients_agree_for_plain_sgd(ratings_csv):
    a = train("biased-mf", ratings_csv, optimizer="sgd", lr=0.01, epochs=3, patience=0, sparse=True)
    b = train("biased-mf", ratings_csv, optimizer="sgd", lr=0.01, epochs=3, patience=0, sparse=False)
    assert a["test_rmse"] == pytest.approx(b["test_rmse"], abs=1e-5)


def test_lr_schedules_and_clipping_run(ratings_csv):
    for schedule in ("exponential", "cosine"):
        result = train("mf", ratings_csv, lr_schedule=schedule, grad_clip=1.0, epochs=3, patience=0)
        assert math.isfinite(result["test_rmse"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(ratings_csv):
    cpu = build_config({"model": "pmf", "data": str(ratings_csv), "device": "cpu"})
    gpu = build_config({"model": "pmf", "data": str(ratings_csv), "device": "cuda"})
    assert run(cpu, None, quiet=True)["test_rmse"] == pytest.approx(
        run(gpu, None, quiet=True)["test_rmse"], abs=1e-3
    )


@pytest.mark.parametrize("kernel", ["torch", "numba"])
@pytest.mark.parametrize("model", ["mf", "biased-mf"])
def test_fused_sgd_step_equals_autograd_sgd(ratings_csv, model, kernel):
    params = {"optimizer": "sgd", "lr": 0.01, "epochs": 3, "patience": 0, "sparse": False, "kernel": kernel}
    fused = train(model, ratings_csv, fused=True, **params)
    autograd = train(model, ratings_csv, fused=False, **params)
    assert fused["test_rmse"] == pytest.approx(autograd["test_rmse"], abs=1e-5)
    assert fused["test_rmse"] != train(model, ratings_csv, fused=True, **{**params, "lr": 0.02})["test_rmse"]


def test_ranking_metrics_in_the_summary_never_recommend_unseen_items(ratings_csv, monkeypatch):
    from deepmovie import evaluation as evaluate_module

    recommended = []
    real = evaluate_module.ranking_metrics

    def spy(score, train, relevant, k, batch_size, extra):
        def recording(users):
            scores = score(users)
            recommended.append(scores.topk(k, dim=1).values)
            return scores

        return real(recording, train, relevant, k=k, batch_size=batch_size, extra=extra)

    monkeypatch.setattr(evaluate_module, "ranking_metrics", spy)
    config = build_config(
        {
            "model": "biased-mf",
            "data": str(ratings_csv),
            "split": "random:0.2",
            "rank_k": 5,
            "params": {"epochs": 3},
        }
    )
    ranking = run(config, None, quiet=True)["ranking"]
    assert 0 < ranking["hr@5"] <= 1 and 0 <= ranking["ndcg@5"] <= ranking["hr@5"]
    assert ranking["ranked_users"] > 0
    assert all(torch.isfinite(v).all() for v in recommended)  # never an -inf (unseen or excluded) item
