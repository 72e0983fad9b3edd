"""AutoRec against dense references, and against the bias baseline on data with a known structure."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from conftest import write_ratings
from deepmovie.config import build_config
from deepmovie.data.interactions import Interactions, RatingScale
from deepmovie.experiment import run
from deepmovie.models import MODELS, DataInfo
from deepmovie.models.autoencoders.autorec import SparseRows


def ratings(n_users: int = 12, n_items: int = 9, density: float = 0.35, seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    users, items = np.nonzero(rng.random((n_users, n_items)) < density)
    values = rng.integers(1, 6, len(users)).astype(np.float32)
    return Interactions(users.astype(np.int32), items.astype(np.int32), values, n_users, n_items)


def model(train: Interactions, **params):
    cls = MODELS.get("autorec")
    info = DataInfo(train.n_users, train.n_items, RatingScale(1, 5), float(train.ratings.mean()))
    built = cls(cls.Params(hidden=5, **params), info)
    built.prepare(train, seed=0)
    return built


def dense_rows(train: Interactions, based: str) -> torch.Tensor:
    matrix = torch.as_tensor(train.csr().toarray(), dtype=torch.float32)
    return matrix.T if based == "item" else matrix


def test_csr_blocks_equal_the_dense_matrix():
    train = ratings()
    rows = SparseRows(sp.csr_matrix(train.csr().T), torch.device("cpu"))
    reference = dense_rows(train, "item")
    pick = torch.tensor([4, 0, 8, 4])
    torch.testing.assert_close(rows.dense(pick), reference[pick])
    a, a_t, (local, cols, values) = rows.sparse(pick)
    torch.testing.assert_close(a.to_dense(), reference[pick])
    torch.testing.assert_close(a_t.to_dense(), reference[pick].T)
    torch.testing.assert_close(values, reference[pick][local, cols])
    assert bool((values != 0).all()) and len(values) == int((reference[pick] != 0).sum())


@pytest.mark.parametrize("based", ["item", "user"])
def test_loss_and_gradient_match_a_dense_masked_reference(based):
    train = ratings()
    m = model(train, based=based, reg=0.3)
    rows = torch.tensor([1, 3, 2])
    objective, squared = m.batch_loss(rows)
    block = dense_rows(train, based)[rows]
    mask = block != 0
    expected_squared = (((m.reconstruct(block) - block) * mask) ** 2).sum()
    expected = expected_squared + 0.5 * 0.3 * len(rows) / m.n_rows * sum((w * w).sum() for w in m.weights())
    torch.testing.assert_close(squared, expected_squared)
    torch.testing.assert_close(objective, expected)
    grads = torch.autograd.grad(expected, list(m.parameters()))
    m.zero_grad()
    m.batch_error(rows).backward()
    with torch.no_grad():  # what train_epoch adds in place for the L2 term
        for w in m.weights():
            w.grad.add_(w, alpha=0.3 * len(rows) / m.n_rows)
    for got, want in zip([p.grad for p in m.parameters()], grads, strict=True):
        torch.testing.assert_close(got, want)


def test_unobserved_entries_do_not_enter_the_loss():
    train = ratings()
    m = model(train, reg=0.0)
    rows = torch.tensor([0, 5])
    block = dense_rows(train, "item")[rows]
    output = m.reconstruct(block).detach().requires_grad_(True)
    mask = block != 0
    squared = (((output - block) * mask) ** 2).sum()
    (gradient,) = torch.autograd.grad(squared, output)
    assert bool((gradient[~mask] == 0).all()) and bool((gradient[mask] != 0).any())
    # the model's own loss agrees, and a user with no rating in these rows gets no decoder gradient
    m.zero_grad()
    m.batch_error(rows).backward()
    unrated = (~mask).all(0)
    assert bool(unrated.any())
    assert bool((m.decoder_weight.grad[unrated] == 0).all())
    assert bool((m.decoder_bias.grad[unrated] == 0).all())


@pytest.mark.parametrize("based", ["item", "user"])
def test_predict_matches_a_dense_reconstruction(based):
    train = ratings()
    m = model(train, based=based)
    m.train_epoch(1)
    m.load_state_dict(m.state_dict())
    users = torch.tensor([0, 3, 3, 11, 7, 0])
    items = torch.tensor([2, 2, 8, 0, 5, 2])
    with torch.no_grad():
        got = m.predict(users, items)
        recon = m.reconstruct(dense_rows(train, based))
    expected = recon[items, users] if based == "item" else recon[users, items]
    torch.testing.assert_close(got, expected)
    assert len(m.predict(users[:0], items[:0])) == 0


@pytest.fixture(scope="module")
def structured_csv(tmp_path_factory):
    return write_ratings(
        tmp_path_factory.mktemp("autorec") / "ratings.csv", n_users=80, n_items=60, density=0.4, seed=5
    )


def test_epoch_order_is_seeded_and_resumable():
    train = ratings()
    m = model(train)
    torch.testing.assert_close(m.epoch_order(3), model(train).epoch_order(3))
    assert not torch.equal(m.epoch_order(3), m.epoch_order(4))


@pytest.mark.parametrize("based", ["item", "user"])
def test_autorec_beats_the_bias_baseline(structured_csv, based):
    def test_rmse(name, params):
        config = build_config(
            {"model": name, "data": str(structured_csv), "split": "random:0.2", "params": params}
        )
        summary = run(config, None, quiet=True)
        assert np.isfinite(summary["test_rmse"])
        return summary["test_rmse"]

    params = {
        "based": based,
        "hidden": 20,
        "epochs": 60,
        "patience": 0,
        "lr": 0.01,
        "batch_size": 16,
        "reg": 1.0,
    }
    assert test_rmse("autorec", params) < test_rmse("bias", {})
