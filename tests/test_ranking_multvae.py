"""Mult-VAE and Mult-DAE: the sparse forward against the dense formulas of the paper, a planted structure
they must recover, fold-in as the same pass, the KL schedule surviving a resume, and validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from pydantic import ValidationError

import deepmovie
from conftest import write_ratings
from deepmovie import machine
from deepmovie.data.interactions import Interactions, RatingScale
from deepmovie.engine.optim import intra_op_threads
from deepmovie.errors import DeepMovieError
from deepmovie.evaluation import ColdFallback, Evaluator
from deepmovie.metrics import ranking_metrics
from deepmovie.models import MODELS, DataInfo
from deepmovie.rundir import CHECKPOINT
from deepmovie.training.checkpoint import load_weights
from deepmovie.training.trainer import Trainer

NAMES = ["multvae", "multdae"]
SMALL = {"hidden": 32, "latent": 8}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: a second intra-op thread only adds hand-offs (seconds on a busy machine)."""
    with intra_op_threads(1):
        yield


def interactions(matrix: np.ndarray, ratings: np.ndarray | None = None) -> Interactions:
    users, items = np.nonzero(matrix)
    values = ratings[users, items] if ratings is not None else np.full(len(users), 4.0)
    return Interactions(
        users.astype(np.int32), items.astype(np.int32), values.astype(np.float32), *matrix.shape
    )


def random_rows(n_users: int = 14, n_items: int = 11, seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    matrix = rng.random((n_users, n_items)) < 0.35
    matrix[3] = False  # a user without interactions
    return interactions(matrix, rng.integers(1, 6, matrix.shape).astype(np.float32))


def build(name: str, train: Interactions, seed: int = 0, **params):
    cls = MODELS.get(name)
    info = DataInfo(train.n_users, train.n_items, RatingScale(1, 5), 3.0)
    torch.manual_seed(seed)
    model = cls(cls.Params(**{**SMALL, **params}), info)
    model.prepare(train, seed=seed)
    return model


def dense(train: Interactions, positive: float = 0.0) -> torch.Tensor:
    kept = train.subset(train.ratings >= positive)
    return torch.as_tensor((kept.csr().toarray() > 0).astype(np.float32))


def reference_scores(model, rows: torch.Tensor) -> torch.Tensor:
    """The paper's deterministic pass on dense rows: ``log softmax(f(mu(W1 x / |x| + b1)))``."""
    hidden = torch.nn.functional.normalize(rows, dim=1) @ model.input_weight + model.input_bias
    code = model.encoder(hidden)[:, : model.params.latent]
    return torch.log_softmax(model.decoder(code), dim=-1)


@pytest.mark.parametrize("name", NAMES)
def test_sparse_scores_equal_the_dense_formula(name):
    train = random_rows()
    model = build(name, train)
    model.train_epoch(1)
    users = torch.arange(train.n_users)
    with torch.no_grad():
        expected = reference_scores(model, dense(train)[users])
        torch.testing.assert_close(model.score_items(users), expected, rtol=1e-5, atol=1e-5)
        # Scoring is the noiseless pass in training mode too, and predict gathers from it.
        model.train()
        again = model.score_items(users)
        torch.testing.assert_close(again, expected, rtol=1e-5, atol=1e-5)
        pairs = model.predict(
            users.repeat_interleave(train.n_items), torch.arange(train.n_items).repeat(len(users))
        )
    torch.testing.assert_close(pairs.view(len(users), -1), again)


def test_dae_loss_is_the_multinomial_likelihood_plus_l2():
    train = random_rows()
    model = build("multdae", train, dropout=0.0, reg=0.3)
    users = torch.tensor([5, 0, 3, 9])
    nll, kl = model.batch_loss(*model.row_entries(users), len(users))
    rows = dense(train)[users]
    expected = -(
        torch.log_softmax(
            model.decoder(
                model.encoder(
                    torch.nn.functional.normalize(rows, dim=1) @ model.input_weight + model.input_bias
                )
            ),
            dim=-1,
        )
        * rows
    ).sum()
    torch.testing.assert_close(nll, expected)
    assert float(kl) == 0.0
    penalty = 0.3 * sum((w * w).sum() for w in model.weights())
    torch.testing.assert_close(model.penalty(), penalty)
    assert len(model.weights()) == 4  # W1, the code layer and the two decoder layers; never biases


def test_vae_kl_is_the_gaussian_kl_of_the_encoder():
    train = random_rows()
    model = build("multvae", train, dropout=0.0)
    users = torch.tensor([1, 2, 4])
    _, kl = model.batch_loss(*model.row_entries(users), len(users))
    rows = dense(train)[users]
    out = model.encoder(torch.nn.functional.normalize(rows, dim=1) @ model.input_weight + model.input_bias)
    mu, logvar = out[:, :8], out[:, 8:]
    expected = 0.5 * (-logvar + logvar.exp() + mu**2 - 1).sum()
    torch.testing.assert_close(kl, expected)


def planted(seed: int = 0) -> tuple[Interactions, sp.csr_matrix]:
    """Four groups of 40, 20, 12 and 8 users, each liking its own block of 15 items (so popularity
    serves the big group only): 6 random items of a user's block in training, the other 9 held out."""
    rng = np.random.default_rng(seed)
    group = np.repeat(np.arange(4), [40, 20, 12, 8])
    block = (np.arange(60)[None, :] // 15) == group[:, None]
    draw = np.where(block, rng.random(block.shape), 2.0)
    train = np.argsort(np.argsort(draw, axis=1), axis=1) < 6
    return interactions(train), sp.csr_matrix((block & ~train).astype(np.float32))


@pytest.mark.parametrize("name", NAMES)
def test_recovers_planted_groups_and_beats_popularity(name):
    train, test = planted()
    model = build(name, train, batch_size=16, lr=1e-2, dropout=0.5)
    for epoch in range(1, 31):
        loss = model.train_epoch(epoch)
    assert math.isfinite(loss)
    model.eval()
    seen = train.csr()
    with torch.no_grad():
        scores = model.score_items(torch.arange(train.n_users))
    scores[torch.as_tensor(seen.toarray() > 0)] = -torch.inf
    top = torch.topk(scores, 5, dim=1).indices
    group = torch.as_tensor(np.repeat(np.arange(4), [40, 20, 12, 8]))
    assert bool(((top // 15) == group[:, None]).all()), "a user's top 5 left their group's block"
    popularity = torch.as_tensor(train.item_counts(), dtype=torch.float32)
    ndcg = ranking_metrics(lambda u: scores[u], seen, test, k=5)["ndcg@5"]
    popular = ranking_metrics(lambda u: popularity.expand(len(u), -1), seen, test, k=5)["ndcg@5"]
    assert ndcg > 0.95 and popular < 0.6, (ndcg, popular)


@pytest.mark.parametrize("name", NAMES)
def test_fold_in_is_the_same_pass_as_a_known_user(name):
    train = random_rows()
    model = build(name, train, positive_rating=3.0)
    model.train_epoch(1)
    model.eval()
    csr = train.csr()
    for user in (0, 5, 3):  # user 3 has no interactions: the prior's scores
        items, ratings = csr.indices[csr.indptr[user] : csr.indptr[user + 1]], csr[user].data
        with torch.no_grad():
            known = model.score_items(torch.tensor([user]))[0].numpy()
        np.testing.assert_allclose(model.fold_in(items, ratings), known, rtol=1e-5, atol=1e-6)
        liked = ratings >= 3.0  # ratings below positive_rating are not interactions
        np.testing.assert_allclose(model.fold_in(items[liked], ratings[liked]), known, rtol=1e-5, atol=1e-6)
    assert not np.allclose(
        model.fold_in(np.array([0]), np.array([5.0])), model.fold_in(np.array([1]), np.array([5.0]))
    )


def test_kl_weight_follows_the_annealing_schedule():
    train = random_rows()  # 13 users with interactions: 2 steps per epoch at batch_size 8
    model = build("multvae", train, batch_size=8, anneal_cap=0.5, total_anneal_steps=4)
    betas = []
    for epoch in range(1, 4):
        before = int(model.anneal_step)
        betas.append(model.beta())
        model.train_epoch(epoch)
        assert int(model.anneal_step) == before + 2
    assert betas == [0.0, 0.5, 0.5]
    assert model.beta() == 0.5
    model.anneal_step.fill_(1)
    assert model.beta() == 0.25
    assert build("multvae", train, anneal_cap=0.3, total_anneal_steps=0).beta() == 0.3


def test_a_resumed_run_continues_the_kl_schedule(tmp_path):
    train = random_rows(30, 12, seed=1)
    valid = random_rows(30, 12, seed=2)
    judge = Evaluator(ColdFallback.fit(train), RatingScale(1, 5))
    settings = {"batch_size": 8, "anneal_cap": 1.0, "total_anneal_steps": 10, "patience": 0}

    def fit(folder, epochs, resume=False):
        cls = MODELS.get("multvae")
        folder.mkdir(exist_ok=True)
        torch.manual_seed(0)
        model = cls(cls.Params(**SMALL, **settings, epochs=epochs), DataInfo(30, 12, RatingScale(1, 5), 3.0))
        Trainer(folder, quiet=True).fit(model, train, valid, judge, seed=0, resume=resume)
        return load_weights(folder / CHECKPOINT)["model"]

    whole = fit(tmp_path / "whole", 4)
    fit(tmp_path / "cut", 2)
    resumed = fit(tmp_path / "cut", 4, resume=True)
    assert int(resumed["anneal_step"]) == int(whole["anneal_step"]) == 4 * 4
    for key, value in whole.items():
        torch.testing.assert_close(resumed[key], value, rtol=0, atol=0, msg=key)


def test_l2_penalty_shrinks_the_dae_weights():
    train, _ = planted()
    norms = {}
    for reg in (0.0, 0.5):
        model = build("multdae", train, batch_size=16, lr=1e-2, reg=reg)
        for epoch in range(1, 6):
            model.train_epoch(epoch)
        norms[reg] = float(sum((w.detach() ** 2).sum() for w in model.weights()))
    assert norms[0.5] < 0.5 * norms[0.0], norms


@pytest.mark.parametrize(
    "bad",
    [
        {"dropout": 1.0},
        {"dropout": -0.1},
        {"hidden": 0},
        {"latent": 0},
        {"anneal_cap": -0.1},
        {"total_anneal_steps": -1},
        {"reg": -1.0},
        {"batch_size": 0},
        {"typo": 1},
    ],
)
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValidationError):
        MODELS.get("multvae").Params(**bad)


def test_defaults_are_the_papers():
    vae, dae = MODELS.get("multvae").Params(), MODELS.get("multdae").Params()
    assert (vae.hidden, vae.latent, vae.dropout, vae.batch_size, vae.lr) == (600, 200, 0.5, 500, 1e-3)
    assert (vae.anneal_cap, vae.total_anneal_steps, vae.reg) == (0.2, 200_000, 0.0)
    assert dae.reg == 0.01 and "anneal_cap" not in type(dae).model_fields
    with pytest.raises(ValidationError):
        MODELS.get("multdae").Params(anneal_cap=0.1)


def test_memory_is_checked_before_it_is_allocated(monkeypatch):
    cls = MODELS.get("multvae")
    model = cls(cls.Params(**SMALL), DataInfo(14, 11, RatingScale(1, 5), 3.0))
    with pytest.raises(
        DeepMovieError, match=r"multvae: the weights of 100,000,000,000 items need [\d.]+ [GT]B"
    ):
        cls(cls.Params(), DataInfo(10, 100_000_000_000, RatingScale(1, 5), 3.0))
    monkeypatch.setattr(machine, "free_memory", lambda device: 1000)
    with pytest.raises(
        DeepMovieError, match=r"multvae: training on 11 items .* need .*, over the 800 B limit"
    ):
        model.prepare(random_rows(), seed=0)


@pytest.mark.parametrize("name", NAMES)
def test_fit_end_to_end(name, tmp_path):
    write_ratings(tmp_path / "ratings.csv", 40, 30, density=0.3)
    rec = deepmovie.fit(name, data=tmp_path, split="random:0.2", device="cpu", epochs=2, **SMALL)
    assert math.isfinite(rec.summary["test_ndcg@10"])
    assert rec.summary["task"] == "implicit" and rec.summary["epochs"] == 2
    loaded = deepmovie.load(rec.save(tmp_path / "run"))
    user = rec.artifacts.user_ids.raw[0]
    assert loaded.recommend(user, k=5) == rec.recommend(user, k=5)
    assert loaded.recommend_new({1: 5.0, 2: 4.0}, k=5) == rec.recommend_new({1: 5.0, 2: 4.0}, k=5)
