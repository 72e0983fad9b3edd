"""iALS: exact and conjugate-gradient row solves, the loss they report, a planted structure it
recovers, fold-in that reproduces a trained user, and two torchrun ranks that train what one process
trains."""

from __future__ import annotations

import itertools
import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

import deepmovie
from conftest import write_ratings
from deepmovie import machine
from deepmovie.config import build_config
from deepmovie.data.interactions import Interactions, RatingScale
from deepmovie.errors import DeepMovieError
from deepmovie.experiment import run
from deepmovie.metrics.ranking import ranking_metrics
from deepmovie.models.base import DataInfo
from deepmovie.models.ranking.ials import IALS, IALSParams
from deepmovie.rundir import SUMMARY, WEIGHTS
from deepmovie.training.checkpoint import load_weights

SCALE = RatingScale(1.0, 5.0)


def _interactions(users, items, ratings, n_users: int, n_items: int) -> Interactions:
    return Interactions(
        np.asarray(users, np.int32),
        np.asarray(items, np.int32),
        np.asarray(ratings, np.float32),
        n_users,
        n_items,
    )


def _random_data(n_users: int = 30, n_items: int = 25, density: float = 0.3, seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    users, items = np.nonzero(rng.random((n_users, n_items)) < density)
    return _interactions(users, items, rng.integers(1, 6, len(users)), n_users, n_items)


def _trained(train: Interactions, epochs: int = 3, **params) -> tuple[IALS, list[float]]:
    torch.manual_seed(0)
    info = DataInfo(train.n_users, train.n_items, SCALE, 3.0)
    model = IALS(IALSParams(**params), info)
    model.prepare(train, seed=0)
    return model, [model.train_epoch(epoch) for epoch in range(1, epochs + 1)]


def _dense(model: IALS, train: Interactions) -> np.ndarray:
    return model.interactions(train).toarray().astype(np.float64)


def _reference_loss(model: IALS, x: np.ndarray) -> float:
    """The loss of the module docstring, summed over the dense matrix in float64."""
    p = model.params
    w, h = model.user_factors.double().numpy(), model.item_factors.double().numpy()
    y = w @ h.T
    observed = (1 + p.alpha) * ((1 - y) ** 2 * x).sum()
    everything = p.alpha0 * (y**2).sum()
    user_ridge = p.reg * (x.sum(1) + p.alpha0 * x.shape[1]) ** p.nu
    item_ridge = p.reg * (x.sum(0) + p.alpha0 * x.shape[0]) ** p.nu
    ridge = (user_ridge * (w**2).sum(1)).sum() + (item_ridge * (h**2).sum(1)).sum()
    return float((observed + everything + ridge) / x.sum())


def _reference_users(model: IALS, x: np.ndarray) -> np.ndarray:
    """Every user's exact solve given the items, one dense float64 system at a time."""
    p = model.params
    h = model.item_factors.double().numpy()
    c, k = 1 + p.alpha, h.shape[1]
    solved = []
    for row in x:
        ridge = p.reg * (row.sum() + p.alpha0 * x.shape[1]) ** p.nu
        system = p.alpha0 * h.T @ h + c * (h.T * row) @ h + ridge * np.eye(k)
        solved.append(np.linalg.solve(system, c * h.T @ row))
    return np.array(solved)


@pytest.mark.parametrize(
    "params",
    [
        {"factors": 6, "solver": "exact"},
        {"factors": 6, "alpha": 4.0, "nu": 0.5, "solver": "exact"},
        {"factors": 3, "alpha0": 1.0, "reg": 0.1, "nu": 0.0, "solve_budget": 256, "solver": "exact"},
        {"factors": 16, "alpha": 1.0, "solver": "exact"},
    ],
    ids=["defaults", "confidence", "primal-tiny-batches", "dual"],
)  # rows of ~8 interactions: k = 3 solves nearly all in the k x k form, k = 16 in the L x L one
def test_each_sweep_solves_every_user_exactly_and_reports_the_loss(params):
    train = _random_data()
    model, losses = _trained(train, epochs=3, **params)
    x = _dense(model, train)
    np.testing.assert_allclose(model.user_factors.numpy(), _reference_users(model, x), atol=2e-5)
    assert losses[-1] == pytest.approx(_reference_loss(model, x), rel=1e-5)
    # Alternating exact minimization never raises the loss.
    assert all(b <= a * (1 + 1e-6) for a, b in itertools.pairwise(losses)), losses


@pytest.mark.parametrize("params", [{"factors": 6}, {"factors": 6, "alpha": 4.0, "nu": 0.5, "cg_steps": 2}])
def test_conjugate_gradient_sweeps_report_their_exact_loss_and_never_raise_it(params):
    """CG's few steps from the last value leave each row inexact, yet the reported loss is the true one
    (``x . b + x . r``) and, each step lowering every row's quadratic, it never rises."""
    train = _random_data()
    model, losses = _trained(train, epochs=5, **params)
    x = _dense(model, train)
    assert losses[-1] == pytest.approx(_reference_loss(model, x), rel=1e-5)
    assert all(b <= a * (1 + 1e-6) for a, b in itertools.pairwise(losses)), losses
    assert np.abs(model.user_factors.numpy() - _reference_users(model, x)).max() > 1e-6  # inexact rows


def test_conjugate_gradient_with_enough_steps_is_the_exact_solve():
    train = _random_data()
    exact, exact_losses = _trained(train, epochs=3, factors=6, solver="exact")
    cg, cg_losses = _trained(train, epochs=3, factors=6, cg_steps=40)
    torch.testing.assert_close(cg.user_factors, exact.user_factors, atol=1e-5, rtol=0)
    torch.testing.assert_close(cg.item_factors, exact.item_factors, atol=1e-5, rtol=0)
    assert cg_losses == pytest.approx(exact_losses, rel=1e-6)


@pytest.mark.parametrize("solver", ["cg", "exact"])
def test_rows_without_interactions_get_zero_vectors(solver):
    train = _random_data(n_users=12, n_items=10, density=0.5, seed=1)
    train.ratings[train.users == 3] = 1.0  # user 3: no rating reaches positive_rating
    train.ratings[train.items == 4] = 2.0
    model, _ = _trained(train, epochs=2, factors=4, positive_rating=3.0, solver=solver)
    assert model.user_factors[3].abs().sum() == 0 and model.item_factors[4].abs().sum() == 0
    assert model.user_factors[0].abs().sum() > 0


def _two_groups(seed: int = 0) -> tuple[Interactions, Interactions]:
    """30 users like items 0-14, 10 users like items 15-29 (so popularity serves only the first group);
    each user has 70% of their block, a third of it held out."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(40):
        block = np.arange(15) if u < 30 else np.arange(15, 30)
        chosen = rng.choice(block, 10, replace=False)
        users += [u] * len(chosen)
        items += chosen.tolist()
    users, items = np.array(users), np.array(items)
    held = rng.random(len(users)) < 1 / 3
    both = _interactions(users, items, np.full(len(users), 5.0), 40, 30)
    return both.subset(~held), both.subset(held)


def test_recovers_two_planted_groups_and_beats_popularity():
    train, test = _two_groups()
    model, _ = _trained(train, epochs=8, factors=2)  # the planted rank: more factors fit each user
    with torch.no_grad():
        scores = model.score_items(torch.arange(40))
    seen = train.csr().toarray() > 0
    scores[torch.as_tensor(seen)] = -torch.inf
    top = torch.topk(scores, 5, dim=1).indices.numpy()
    assert (top[:30] < 15).all() and (top[30:] >= 15).all()
    popularity = torch.as_tensor(np.bincount(train.items, minlength=30), dtype=torch.float32)
    figures = {
        name: ranking_metrics(score, train.csr(), test.csr(), k=10)["ndcg@10"]
        for name, score in {
            "ials": lambda users: model.score_items(users.long()),
            "popularity": lambda users: popularity.expand(len(users), -1),
        }.items()
    }
    assert figures["ials"] > figures["popularity"] + 0.15, figures


def test_fold_in_of_a_training_users_history_is_their_trained_scores():
    train = _random_data(n_users=20, n_items=18, density=0.4, seed=2)
    # fold-in drops ratings < 3 too; it solves exactly, as the exact solver's sweeps do
    model, _ = _trained(train, epochs=3, factors=5, positive_rating=3.0, solver="exact")
    by_user = train.csr()
    trained = model.user_factors.clone()
    model.sweep_users()  # the sweep ended with the users: another user half-sweep changes nothing
    torch.testing.assert_close(model.user_factors, trained, atol=1e-6, rtol=0)
    with torch.no_grad():
        expected = model.score_items(torch.arange(20)).numpy()
    for u in range(20):
        span = slice(by_user.indptr[u], by_user.indptr[u + 1])
        folded = model.fold_in(by_user.indices[span], by_user.data[span])
        assert folded.shape == (18,)
        np.testing.assert_allclose(folded, expected[u], atol=1e-5, rtol=1e-5)
    assert np.abs(model.fold_in(np.array([0]), np.array([1.0]))).max() == 0  # nothing reaches 3: zeros


def test_predict_equals_score_items_over_the_same_pairs():
    model, _ = _trained(_random_data(), epochs=2, factors=7)
    users = torch.tensor([0, 3, 3, 29, 11])
    items = torch.tensor([0, 24, 5, 7, 11])
    with torch.no_grad():
        rows = model.score_items(users)
        torch.testing.assert_close(model.predict(users, items), rows[torch.arange(5), items])


@pytest.mark.parametrize(
    "bad",
    [{"factors": 0}, {"alpha0": 0.0}, {"alpha": -1.0}, {"reg": 0.0}, {"nu": -0.5}, {"init_std": 0.0},
     {"solve_budget": 10}, {"epochs": 0}, {"rank": 8}, {"solver": "lu"}, {"cg_steps": 0}],
)  # fmt: skip
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValidationError):
        IALSParams(**bad)


def test_default_init_is_rendles_and_explicit_init_std_is_used():
    info = DataInfo(2000, 1000, SCALE, 3.0)
    torch.manual_seed(0)
    assert IALS(IALSParams(), info).item_factors.std() == pytest.approx(0.1 / 8, rel=0.02)
    assert IALS(IALSParams(init_std=0.5), info).item_factors.std() == pytest.approx(0.5, rel=0.02)


def test_a_fit_too_large_for_memory_is_refused_naming_the_figure(monkeypatch):
    monkeypatch.setattr(machine, "free_memory", lambda device: 1000)
    info = DataInfo(30, 25, SCALE, 3.0)
    with pytest.raises(
        DeepMovieError, match=r"ials: .* interactions with 64 factors need .*, over the 800 B limit"
    ):
        IALS(IALSParams(), info).prepare(_random_data(), seed=0)


def test_fit_on_a_ratings_file_reports_finite_ranking_figures(tmp_path):
    write_ratings(tmp_path / "ratings.csv", n_users=40, n_items=30, density=0.35, seed=4)
    rec = deepmovie.fit("ials", data=tmp_path, split="random:0.2", seed=0, device="cpu", epochs=2)
    assert math.isfinite(rec.summary["test_ndcg@10"]) and rec.summary["test_ndcg@10"] > 0
    assert len(rec.summary["epoch_seconds"]) == 2
    loaded = deepmovie.load(rec.save(tmp_path / "run"))
    user = rec.artifacts.user_ids.raw[0]
    assert loaded.recommend(user, k=5) == rec.recommend(user, k=5)


# --- two torchrun ranks --------------------------------------------------------------------------

DISTRIBUTED_PARAMS = {"epochs": 3, "factors": 8, "solve_budget": 256}


def _config(data: Path, solver: str) -> dict:
    return {
        "model": "ials",
        "data": str(data),
        "split": "random:0.2",
        "seed": 5,
        "params": {**DISTRIBUTED_PARAMS, "solver": solver},
    }


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("solver", ["cg", "exact"])
def test_two_torchrun_ranks_train_what_one_process_trains(tmp_path, solver):
    data = write_ratings(tmp_path / "ratings.csv", n_users=90, n_items=70, density=0.3, seed=3)
    run(build_config(_config(data, solver)), tmp_path / "one", quiet=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    command += ["--master-addr", "127.0.0.1", "--master-port", str(port), str(Path(__file__).resolve())]
    command += [str(data), str(tmp_path), solver]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert not (tmp_path / "two-rank1").exists()
    one, two = tmp_path / "one", tmp_path / "two-rank0"
    a, b = json.loads((two / SUMMARY).read_text()), json.loads((one / SUMMARY).read_text())
    assert a["world_size"] == 2 and b["world_size"] == 1
    assert a["test_ndcg@10"] == pytest.approx(b["test_ndcg@10"], abs=1e-6)
    weights, reference = load_weights(two / WEIGHTS)["state"], load_weights(one / WEIGHTS)["state"]
    for key, value in reference.items():
        torch.testing.assert_close(weights[key], value, atol=1e-5, rtol=0, msg=key)


if __name__ == "__main__":  # a torchrun rank of the test above
    from deepmovie.engine import distributed

    distributed.start("cpu")
    out = Path(sys.argv[2]) / f"two-rank{distributed.rank()}"
    run(build_config(_config(Path(sys.argv[1]), sys.argv[3])), out, quiet=True)
