"""AutoRec against dense references, and against the bias baseline on data with a known structure."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from conftest import fit_test_rmse, random_ratings, write_ratings
from deepmovie.config import build_config
from deepmovie.data.interactions import Interactions, RatingScale
from deepmovie.experiment import run
from deepmovie.models import MODELS, DataInfo
from deepmovie.models.autoencoders.rows import SparseRows


def ratings(seed: int = 0) -> Interactions:
    return random_ratings(12, 9, 0.35, seed)


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
    assert rows.count(pick) == len(values)


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
    params = {
        "based": based,
        "hidden": 20,
        "epochs": 60,
        "patience": 0,
        "lr": 0.01,
        "batch_size": 16,
        "reg": 1.0,
    }
    assert fit_test_rmse(structured_csv, "autorec", params) < fit_test_rmse(structured_csv, "bias", {})


def deep_model(name: str, train: Interactions, **params):
    cls = MODELS.get(name)
    info = DataInfo(train.n_users, train.n_items, RatingScale(1, 5), float(train.ratings.mean()))
    built = cls(cls.Params(**params), info)
    built.prepare(train, seed=0)
    return built


def test_deeprec_tied_decoder_shares_the_encoder_weights():
    train = ratings()
    tied = deep_model("deeprec", train, hidden=[6, 4], tied=True)
    free = deep_model("deeprec", train, hidden=[6, 4], tied=False)
    assert tied.decoder_weight is tied.encoder_weight
    n_tied = sum(p.numel() for p in tied.parameters())
    n_free = sum(p.numel() for p in free.parameters())
    assert n_free - n_tied == train.n_items * 6 + 6 * 4  # the output layer and the mirror hidden layer
    assert len(tied.weights()) == 2  # each shared matrix is penalised once
    tied.eval()
    rows = torch.tensor([0, 2])
    block = tied._rows.dense(rows)
    encoder_layer = tied.middle[0]
    code = torch.selu(encoder_layer(torch.selu(block @ tied.encoder_weight + tied.encoder_bias)))
    hidden = torch.selu(code @ encoder_layer.weight + tied.middle[3].bias)
    expected = hidden @ tied.encoder_weight.T + tied.decoder_bias
    torch.testing.assert_close(tied.reconstruct(block), expected)


def test_deeprec_refeeding_takes_a_second_step_on_the_dense_reconstruction(monkeypatch):
    train = ratings()
    m = deep_model("deeprec", train, hidden=[6, 4], refeed=2, code_dropout=0.0)
    losses = []
    real_step = m.step
    monkeypatch.setattr(m, "step", lambda loss, n: (losses.append(n), real_step(loss, n)))
    m.train_epoch(1)
    batches = -(-m.n_rows // m.params.batch_size)
    assert len(losses) == 3 * batches  # one ordinary step and two re-fed ones per batch


@pytest.fixture(scope="module")
def two_tastes_csv(tmp_path_factory):
    """Two groups of users, each loving its own half of the items and disliking the other half: item
    popularity cannot tell a user's next favourite, a personal model can."""
    rng = np.random.default_rng(3)
    lines = ["userId,movieId,rating"]
    for user in range(60):
        group = user % 2
        for item in rng.choice(40, 16, replace=False):
            liked = (item < 20) == (group == 0)
            lines.append(f"{user + 1},{item + 1},{5 if liked else rng.integers(1, 3)}")
    path = tmp_path_factory.mktemp("cdae") / "ratings.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cdae_trains_on_positive_items_only():
    train = ratings()
    m = deep_model("cdae", train, hidden=4)
    matrix = m._rows.matrix
    assert set(np.unique(matrix.data)) == {1.0}
    assert matrix.nnz == int((train.ratings >= 4).sum())
    m.train()
    rows = torch.tensor([0, 1, 2])
    assert not torch.equal(m.logits(rows, corrupt=True)[0], m.logits(rows, corrupt=True)[0])
    m.eval()
    torch.testing.assert_close(m.score_items(rows), m.score_items(rows))


def test_cdae_is_ranked_and_beats_popularity(two_tastes_csv):
    def summary(model, params):
        config = build_config(
            {
                "model": model,
                "data": str(two_tastes_csv),
                "split": "random:0.2",
                "rank_k": 10,
                "params": params,
            }
        )
        return run(config, None, quiet=True)

    cdae = summary("cdae", {"hidden": 16, "epochs": 60, "lr": 0.01, "batch_size": 8, "patience": 0})
    assert cdae["task"] == "implicit" and cdae["monitor"] == "ndcg@10"
    assert cdae["test_rmse"] is None and "ranking" not in cdae
    popularity = summary("bias", {})["ranking"]  # ranks every user's items by item bias alone
    assert cdae["test_ndcg@10"] > popularity["ndcg@10"] + 0.1
    assert cdae["test_hr@10"] >= popularity["hr@10"]


def test_a_sigmoid_decoder_reaches_every_rating_of_the_scale():
    train = ratings()
    m = model(train, decoder="sigmoid")
    out = m.f(torch.tensor([-50.0, 0.0, 50.0]))
    torch.testing.assert_close(out, torch.tensor([1.0, 3.0, 5.0]))
