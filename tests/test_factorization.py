"""The factorization family against brute-force references, and on data with a known structure."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from conftest import fit_test_rmse, write_ratings
from deepmovie.config import build_config
from deepmovie.data.interactions import Interactions, RatingScale
from deepmovie.errors import DeepMovieError
from deepmovie.experiment import build_model, prepare, run
from deepmovie.models import MODELS, DataInfo
from deepmovie.models.factorization.als import PaddedRows, solve_rows


def random_matrix(n_rows: int, n_cols: int, density: float, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    matrix = sp.random(
        n_rows,
        n_cols,
        density=density,
        format="csr",
        random_state=rng,
        data_rvs=lambda n: rng.integers(1, 6, n).astype(np.float32),
    )
    matrix.sort_indices()
    return matrix


@pytest.mark.parametrize("reg_by_count", [False, True])
@pytest.mark.parametrize("with_center", [False, True])
@pytest.mark.parametrize("biased", [False, True])
def test_batched_solve_matches_row_by_row_ridge(reg_by_count, with_center, biased):
    matrix = random_matrix(50, 30, 0.2)
    matrix.data[matrix.indptr[3] : matrix.indptr[4]] = 0  # a row with no ratings
    matrix.eliminate_zeros()
    fixed = torch.randn(30, 4, dtype=torch.float64)
    center = torch.randn(50, 4, dtype=torch.float64) if with_center else None
    out = torch.zeros(50, 4, dtype=torch.float64)
    fixed_bias = torch.randn(30, dtype=torch.float64) if biased else None
    out_bias = torch.full((50,), 9.0, dtype=torch.float64) if biased else None
    padded = PaddedRows.from_csr(matrix, matrix.data, torch.device("cpu"), budget=64)
    assert len(padded.chunks) > 3  # several chunks of different lengths
    loss = solve_rows(
        padded,
        fixed,
        out,
        reg=0.7,
        center=center,
        reg_by_count=reg_by_count,
        fixed_bias=fixed_bias,
        out_bias=out_bias,
        reg_bias=0.3,
    )
    expected_loss = 0.0
    for row in range(50):
        cols = matrix.indices[matrix.indptr[row] : matrix.indptr[row + 1]]
        values = torch.as_tensor(
            matrix.data[matrix.indptr[row] : matrix.indptr[row + 1]], dtype=torch.float64
        )
        y, penalty, prior = fixed[cols], [0.7] * 4, center[row] if with_center else torch.zeros(4)
        if biased:  # the row's bias: one more column of ones, its own penalty, a prior of 0
            values = values - fixed_bias[cols]
            y = torch.cat([y, torch.ones(len(cols), 1, dtype=torch.float64)], 1)
            penalty, prior = [*penalty, 0.3], torch.cat([prior, torch.zeros(1)])
        lam = torch.tensor(penalty, dtype=torch.float64) * (len(cols) if reg_by_count else 1)
        if len(cols) == 0:
            expected = prior.double()
        else:
            rhs = y.T @ values + lam * prior.double()
            expected = torch.linalg.solve(y.T @ y + torch.diag(lam), rhs)
            expected_loss += float(((values - y @ expected) ** 2).sum())
        torch.testing.assert_close(out[row], expected[:4])
        if biased:
            torch.testing.assert_close(out_bias[row], expected[4])
    assert loss == pytest.approx(expected_loss)


def test_biased_pmf_fold_in_of_a_training_users_history_is_their_trained_vector(low_rank_csv):
    config = build_config(
        {
            "model": "pmf",
            "data": str(low_rank_csv),
            "params": {"factors": 4, "epochs": 3, "patience": 0, "biases": True, "reg_bias": 0.2},
        }
    )
    dataset, splits = prepare(config)
    train = splits[0].train
    model = build_model(config, dataset, splits[0], torch.device("cpu"))
    model.prepare(train, seed=0)
    for epoch in (1, 2):
        model.train_epoch(epoch)
    model.sweep_users()  # the user side is now the exact solve given the items
    factors = model.factors()
    assert np.abs(factors.item_bias).max() > 0.05 and np.abs(factors.user_bias).max() > 0.05
    for user in (0, 7):
        mine = train.users == user
        vector, bias = factors.fold_in(train.items[mine], train.ratings[mine])
        np.testing.assert_allclose(vector, factors.user_vectors[user], rtol=1e-3, atol=1e-4)
        assert bias == pytest.approx(factors.user_bias[user], abs=1e-4)


def test_biases_help_pmf_on_data_with_strong_biases(tmp_path):
    rng = np.random.default_rng(0)
    users, items = np.nonzero(rng.random((120, 80)) < 0.3)
    ratings = np.clip(np.rint(3 + rng.normal(0, 0.8, 120)[users] + rng.normal(0, 0.8, 80)[items]), 1, 5)
    path = tmp_path / "biased.csv"
    rows = [f"{u},{i},{r:g}" for u, i, r in zip(users, items, ratings, strict=True)]
    path.write_text("userId,movieId,rating\n" + "\n".join(rows) + "\n")
    params = {"factors": 4, "epochs": 10, "reg_user": 0.1, "reg_item": 0.1}
    plain = fit_test_rmse(path, "pmf", params)
    assert fit_test_rmse(path, "pmf", {**params, "biases": True}) < plain - 0.02


def info(n_users=20, n_items=15) -> DataInfo:
    return DataInfo(n_users, n_items, RatingScale(1, 5), 3.0)


def test_svdpp_prediction_matches_its_formula():
    params = MODELS.get("svdpp").Params(factors=3)
    model = MODELS.get("svdpp")(params, info())
    matrix = random_matrix(20, 15, 0.3, seed=1)
    coo = matrix.tocoo()
    data = Interactions(coo.row.astype(np.int32), coo.col.astype(np.int32), coo.data, 20, 15)
    model.prepare(data, seed=0)
    users, items = torch.tensor([0, 5, 5, 19]), torch.tensor([1, 2, 14, 0])
    got = model.predict(users, items).detach()
    for k, (u, i) in enumerate(zip(users.tolist(), items.tolist(), strict=True)):
        rated = matrix.indices[matrix.indptr[u] : matrix.indptr[u + 1]]
        implicit = model.implicit.weight[rated].sum(0) / max(len(rated), 1) ** 0.5
        vector = model.user_factors.weight[u] + implicit
        expected = (
            model.mean
            + model.user_bias.weight[u, 0]
            + model.item_bias.weight[i, 0]
            + vector @ model.item_factors.weight[i]
        )
        assert float(got[k]) == pytest.approx(float(expected), abs=1e-5)


@pytest.fixture(scope="module")
def low_rank_csv(tmp_path_factory):
    return write_ratings(
        tmp_path_factory.mktemp("lowrank") / "ratings.csv", n_users=150, n_items=120, density=0.35, seed=3
    )


@pytest.mark.parametrize(
    ("model", "params"),
    [
        ("pmf", {"factors": 5, "epochs": 15, "reg_user": 0.05, "reg_item": 0.05}),
        (
            "biased-mf",
            {"factors": 8, "epochs": 40, "optimizer": "adam", "lr": 0.01, "reg_user": 0.05, "reg_item": 0.05},
        ),
        (
            "svdpp",
            {"factors": 8, "epochs": 30, "optimizer": "adam", "lr": 0.01, "reg_user": 0.05, "reg_item": 0.05},
        ),
        ("mf", {"factors": 8, "epochs": 60, "optimizer": "adam", "lr": 0.02, "init_std": 0.3}),
    ],
)
def test_models_beat_both_baselines_on_low_rank_data(low_rank_csv, model, params):
    bias = fit_test_rmse(low_rank_csv, "bias", {})
    assert fit_test_rmse(low_rank_csv, "global-mean", {}) > bias
    assert fit_test_rmse(low_rank_csv, model, params) < bias - 0.05


def test_pmf_sweeps_decrease_the_training_objective(low_rank_csv):
    config = build_config(
        {"model": "pmf", "data": str(low_rank_csv), "params": {"factors": 5, "epochs": 6, "patience": 0}}
    )
    summary = run(config, None, quiet=True)
    assert summary["epochs"] == 6
    from deepmovie.experiment import build_model, prepare

    dataset, splits = prepare(config)
    model = build_model(config, dataset, splits[0], torch.device("cpu"))
    model.prepare(splits[0].train, seed=0)
    losses = [model.train_epoch(epoch) for epoch in range(1, 6)]
    assert all(b <= a + 1e-6 for a, b in itertools.pairwise(losses))


def test_svdpp_never_takes_the_biased_mf_shortcut(low_rank_csv):
    """SVD++ inherits biased MF's closed-form step; using it would silently drop the implicit term."""
    config = build_config(
        {
            "model": "svdpp",
            "data": str(low_rank_csv),
            "params": {"optimizer": "sgd", "lr": 0.005, "epochs": 3, "patience": 0},
        }
    )
    from deepmovie.experiment import build_model, prepare

    dataset, splits = prepare(config)
    model = build_model(config, dataset, splits[0], torch.device("cpu"))
    model.prepare(splits[0].train, seed=0)
    assert not model._fused_sgd()
    before = model.implicit.weight.detach().clone()
    model.train_epoch(1)
    assert not torch.equal(model.implicit.weight, before)


def test_svdpp_visits_a_heavy_user_in_small_blocks_so_plain_sgd_stays_finite(tmp_path):
    """One user rated all 3,000 items: visited as one block, its summed step made SGD diverge."""
    rng = np.random.default_rng(0)
    rows = ["userId,movieId,rating", *(f"0,{item},{rng.integers(1, 6)}" for item in range(3000))]
    for user in range(1, 200):
        rows += [f"{user},{item},{rng.integers(1, 6)}" for item in rng.choice(3000, 30, replace=False)]
    path = tmp_path / "heavy.csv"
    path.write_text("\n".join(rows) + "\n")
    values = {"model": "svdpp", "data": str(path), "params": {"epochs": 3}}
    assert np.isfinite(run(build_config(values), None, quiet=True)["test_rmse"])
    with pytest.raises(DeepMovieError, match="loss became nan"):  # the whole user as one block
        run(build_config({**values, "params": {"epochs": 3, "user_block": 10**6}}), None, quiet=True)
    config = build_config(values)
    dataset, splits = prepare(config)
    model = build_model(config, dataset, splits[0], torch.device("cpu"))
    model.prepare(splits[0].train, seed=0)
    order = model.epoch_order(1)
    assert sorted(order.tolist()) == list(range(len(splits[0].train)))
    heavy = torch.nonzero(model._users[order] == 0).flatten()
    runs = torch.diff(heavy) != 1  # breaks between the heavy user's visits
    assert int(runs.sum()) + 1 >= len(heavy) // model.params.user_block // 2


def trained_tables(csv, model: str, **params) -> tuple[dict[str, torch.Tensor], list[float]]:
    """Weights and per-epoch training losses of a 3-epoch plain-SGD fit."""
    config = build_config(
        {
            "model": model,
            "data": str(csv),
            "split": "random:0.2",
            "params": {"optimizer": "sgd", "lr": 0.01, "epochs": 3, "patience": 0, **params},
        }
    )
    dataset, splits = prepare(config)
    fitted = build_model(config, dataset, splits[0], torch.device("cpu"))
    fitted.prepare(splits[0].train, seed=0)
    losses = [fitted.train_epoch(epoch) for epoch in (1, 2, 3)]
    return fitted.state_dict(), losses


@pytest.mark.parametrize(
    ("batch_size", "order"), [(1, "shuffled"), (5, "shuffled"), (64, "by-user"), (1, "by-user")]
)
@pytest.mark.parametrize("model", ["mf", "biased-mf"])
def test_compiled_sgd_epochs_equal_the_torch_step(low_rank_csv, model, batch_size, order):
    """The Numba epoch is the same mini-batch SGD as ``sgd_step``: batch-start reads, summed repeats."""
    pytest.importorskip("numba")
    settings = {"batch_size": batch_size, "order": order}
    compiled, compiled_losses = trained_tables(low_rank_csv, model, kernel="numba", **settings)
    reference, reference_losses = trained_tables(low_rank_csv, model, kernel="torch", **settings)
    assert compiled_losses == pytest.approx(reference_losses, rel=1e-5)
    for name, tensor in reference.items():
        torch.testing.assert_close(compiled[name], tensor, rtol=1e-4, atol=1e-5)
    other, _ = trained_tables(
        low_rank_csv, model, kernel="numba", **{**settings, "batch_size": batch_size + 1}
    )
    assert not torch.allclose(other["user_factors.weight"], compiled["user_factors.weight"])


def test_hogwild_threads_train_the_same_model(low_rank_csv):
    """Lock-free parts of an epoch at once: not bit-equal to one thread, but as good."""
    pytest.importorskip("numba")
    settings = {"optimizer": "sgd", "lr": 0.005, "batch_size": 1, "epochs": 20, "patience": 0}
    one = run(
        build_config({"model": "biased-mf", "data": str(low_rank_csv), "params": settings}), None, quiet=True
    )
    two = run(
        build_config(
            {"model": "biased-mf", "data": str(low_rank_csv), "params": {**settings, "sgd_threads": 2}}
        ),
        None,
        quiet=True,
    )
    assert two["test_rmse"] == pytest.approx(one["test_rmse"], abs=0.01)
    assert (
        two["test_rmse"]
        < 0.9 * run(build_config({"model": "bias", "data": str(low_rank_csv)}), None, quiet=True)["test_rmse"]
    )


def test_kernel_numba_without_numba_is_one_clear_error(low_rank_csv, monkeypatch):
    from deepmovie.models.factorization import mf

    real = mf.importlib.util.find_spec
    monkeypatch.setattr(mf.importlib.util, "find_spec", lambda name: None if name == "numba" else real(name))
    with pytest.raises(DeepMovieError, match=r"deepmovie\[fast\]"):
        trained_tables(low_rank_csv, "biased-mf", kernel="numba")
    _, losses = trained_tables(low_rank_csv, "biased-mf", kernel="auto")  # auto falls back to torch
    assert all(np.isfinite(losses))


def test_by_user_order_visits_each_rating_once_with_each_users_ratings_together(low_rank_csv):
    config = build_config({"model": "biased-mf", "data": str(low_rank_csv), "params": {"order": "by-user"}})
    dataset, splits = prepare(config)
    model = build_model(config, dataset, splits[0], torch.device("cpu"))
    model.prepare(splits[0].train, seed=0)
    users = torch.as_tensor(splits[0].train.users).long()
    first, second = model.epoch_order(1), model.epoch_order(2)
    assert torch.equal(torch.sort(first).values, torch.arange(len(users)))
    visited = users[first]
    changes = int((visited[1:] != visited[:-1]).sum()) + 1
    assert changes == len(torch.unique(users))  # one block per user
    assert not torch.equal(torch.unique_consecutive(visited), torch.unique_consecutive(users[second]))
