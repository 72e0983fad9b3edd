"""BPR and the two-tower model: sampled-negative rankers recover a planted structure, fold in new users,
sample negatives as documented, and run through ``deepmovie.fit``."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import deepmovie
import deepmovie.models.ranking.bpr  # registers bpr
import deepmovie.models.ranking.two_tower  # registers two-tower
from conftest import write_movies, write_ratings
from deepmovie.config import parse_params
from deepmovie.data.interactions import Interactions, RatingScale
from deepmovie.engine.optim import intra_op_threads
from deepmovie.errors import DeepMovieError
from deepmovie.metrics import ranking_metrics
from deepmovie.models.base import DataInfo, FoldInUnsupported
from deepmovie.models.ranking.bpr import BPR
from deepmovie.models.ranking.two_tower import TwoTower

N_A, N_B, BLOCK = 40, 20, 20  # users of group A, of group B; items per block (A: 0..19, B: 20..39)
SMALL = {
    "bpr": {"factors": 8, "lr": 0.01, "batch_size": 64, "epochs": 40},
    "two-tower": {"embedding_dim": 16, "hidden": [32], "dim": 16, "lr": 0.01, "batch_size": 64, "epochs": 25},
}
CLASSES = {"bpr": BPR, "two-tower": TwoTower}


def planted(seed: int = 0) -> tuple[Interactions, sp.csr_matrix]:
    """(train, held-out relevant): each group interacts only with its own block of items; group A is
    twice as large, so popularity ranks A's items first for everyone."""
    rng = np.random.default_rng(seed)
    n_users = N_A + N_B
    block = np.where(np.arange(n_users) < N_A, 0, 1)
    own = np.arange(2 * BLOCK)[None, :] // BLOCK == block[:, None]
    likes = (rng.random((n_users, 2 * BLOCK)) < 0.6) & own
    users, items = np.nonzero(likes)
    held = rng.random(len(users)) < 0.25
    ratings = rng.choice([3.0, 4.0, 5.0], len(users))
    train = Interactions(
        users[~held].astype(np.int32), items[~held].astype(np.int32), ratings[~held], n_users, 2 * BLOCK
    )
    relevant = sp.csr_matrix(
        (np.ones(int(held.sum())), (users[held], items[held])), shape=(n_users, 2 * BLOCK)
    )
    return train, relevant


def trained(name: str, **params) -> tuple[torch.nn.Module, Interactions, sp.csr_matrix]:
    """A small model fitted on the planted data; one thread, as tensors this small gain nothing from more."""
    train, relevant = planted()
    torch.manual_seed(0)
    model_class = CLASSES[name]
    info = DataInfo(train.n_users, train.n_items, RatingScale(1, 5), 4.0)
    model = model_class(model_class.Params(**{**SMALL[name], **params}), info)
    model.prepare(train, seed=0)
    model.train()
    with intra_op_threads(1):
        losses = [model.train_epoch(epoch) for epoch in range(1, model.params.epochs + 1)]
    assert np.isfinite(losses).all() and losses[-1] < losses[0], losses
    return model.eval(), train, relevant


@pytest.mark.parametrize("name", ["bpr", "two-tower"])
def test_recovers_the_planted_blocks_and_beats_popularity(name):
    model, train, relevant = trained(name)
    with torch.no_grad():
        scores = model.score_items(torch.arange(train.n_users))
    scores[torch.as_tensor(train.csr().toarray() > 0)] = -torch.inf
    top = torch.topk(scores, 5, dim=1).indices.numpy()
    own_block = np.where(np.arange(train.n_users) < N_A, 0, 1)[:, None]
    assert (top // BLOCK == own_block).all()

    # Group B's held-out items: popularity ranks A's (more popular) items first and finds none of them.
    group_b = sp.csr_matrix(relevant.toarray() * (np.arange(train.n_users) >= N_A)[:, None])
    counts = torch.as_tensor(train.item_counts(), dtype=torch.float32)
    popularity = ranking_metrics(lambda u: counts.expand(len(u), -1), train.csr(), group_b, k=5)
    with torch.no_grad():
        ours = ranking_metrics(model.score_items, train.csr(), group_b, k=5)
    assert popularity["ndcg@5"] < 0.05 and ours["ndcg@5"] > 0.25, (ours, popularity)


@pytest.mark.parametrize("name", ["bpr", "two-tower"])
def test_training_is_seeded(name):
    first, _, _ = trained(name, epochs=2)
    second, _, _ = trained(name, epochs=2)
    for (key, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=key)


def test_bpr_folds_in_the_mean_item_factor_of_the_positives():
    model, _, _ = trained("bpr", positive_rating=4.0)
    items, ratings = np.array([25, 30, 2]), np.array([5.0, 4.0, 3.0])  # the 3 is not a positive
    scores = model.fold_in(items, ratings)
    q, b = model.item_factors.weight.detach(), model.item_bias.weight.detach()[:, 0]
    expected = (q @ q[[25, 30]].mean(0) + b).numpy()
    no_positive = model.fold_in(np.array([2]), np.array([1.0]))
    np.testing.assert_allclose(scores, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(no_positive, b.numpy())  # no positive: the item biases alone
    unseen = np.setdiff1d(np.arange(2 * BLOCK), [25, 30])
    top = unseen[np.argsort(-scores[unseen])[:5]]
    assert (top >= BLOCK).all(), top  # B's items, like the ones given


def test_two_tower_fold_in_of_a_users_own_history_equals_their_scores():
    """Without a user-id embedding the user tower reads only the history: folding a training user's
    positives back in must give exactly their trained scores."""
    model, train, _ = trained("two-tower", user_embedding=False)
    matrix = train.csr()
    with torch.no_grad():
        for user in (0, N_A + 3):
            items = matrix[user].indices
            folded = model.fold_in(items, matrix[user].data)
            torch.testing.assert_close(
                torch.as_tensor(folded), model.score_items(torch.tensor([user]))[0], rtol=1e-5, atol=1e-5
            )


def test_two_tower_folds_in_a_new_user_by_their_history():
    model, _, _ = trained("two-tower")
    scores = model.fold_in(np.array([21, 27, 33]), np.array([5.0, 4.0, 5.0]))
    unseen = np.setdiff1d(np.arange(2 * BLOCK), [21, 27, 33])
    assert np.isfinite(scores).all() and scores.shape == (2 * BLOCK,)
    assert (unseen[np.argsort(-scores[unseen])[:5]] >= BLOCK).all()


def test_two_tower_without_history_cannot_fold_in():
    model, _, _ = trained("two-tower", history=False, user_embedding=True, epochs=2)
    with pytest.raises(FoldInUnsupported, match="cold start is not supported"):
        model.fold_in(np.array([1]), np.array([5.0]))


def test_popularity_sampler_draws_by_count_to_the_exponent():
    train, _ = planted()
    train = train.subset(train.items != 7)  # item 7 is never a positive: it must never be drawn
    info = DataInfo(train.n_users, train.n_items, RatingScale(1, 5), 4.0)
    model = BPR(BPR.Params(sampler="popularity", popularity_exponent=0.5, negatives=50), info)
    model.prepare(train, seed=0)
    model.epoch_order(1)
    _, _, negatives = model.training_rows(torch.arange(len(train)).repeat(10))
    drawn = np.bincount(negatives.flatten().numpy(), minlength=train.n_items) / negatives.numel()
    expected = train.item_counts() ** 0.5
    expected /= expected.sum()
    assert drawn[7] == 0
    np.testing.assert_allclose(drawn, expected, atol=0.003)


def test_uniform_negatives_cover_every_item():
    train, _ = planted()
    model = BPR(BPR.Params(negatives=4), DataInfo(train.n_users, train.n_items, RatingScale(1, 5), 4.0))
    model.prepare(train, seed=0)
    model.epoch_order(1)
    _, _, negatives = model.training_rows(torch.arange(len(train)))
    assert negatives.shape == (len(train), 4) and negatives.dtype == torch.long
    assert set(negatives.flatten().tolist()) == set(range(train.n_items))


@pytest.mark.parametrize(
    ("name", "params", "field"),
    [
        ("bpr", {"negatives": 0}, "negatives"),
        ("bpr", {"sampler": "hard"}, "sampler"),
        ("bpr", {"popularity_exponent": -1}, "popularity_exponent"),
        ("bpr", {"factors": 0}, "factors"),
        ("two-tower", {"temperature": 0}, "temperature"),
        ("two-tower", {"dim": 0}, "dim"),
        ("two-tower", {"user_embedding": False, "history": False}, "user tower needs an input"),
        ("two-tower", {"dropout": 1.0}, "dropout"),
    ],
)
def test_bad_parameters_are_refused(name, params, field):
    with pytest.raises(DeepMovieError, match=field):
        parse_params(name, params)


def test_defaults_are_the_documented_ones():
    bpr, tower = parse_params("bpr", {}), parse_params("two-tower", {})
    assert (bpr.positive_rating, bpr.negatives, bpr.sampler) == (0, 1, "uniform")
    assert bpr.popularity_exponent == 0.75
    assert (tower.positive_rating, tower.temperature, tower.use_genres) == (0, 0.05, None)
    assert tower.logq_correction


def test_two_tower_refuses_genres_the_data_lacks_and_batches_that_cannot_fit():
    train, _ = planted()
    info = DataInfo(train.n_users, train.n_items, RatingScale(1, 5), 4.0)
    with pytest.raises(DeepMovieError, match="use_genres needs item genres"):
        TwoTower(TwoTower.Params(use_genres=True), info)
    model = TwoTower(TwoTower.Params(batch_size=100_000_000), info)
    with pytest.raises(DeepMovieError, match="in-batch logits of batch_size 100,000,000 need"):
        model.prepare(train, seed=0)


@pytest.mark.parametrize("name", ["bpr", "two-tower"])
def test_fit_through_the_api(tmp_path, name):
    write_ratings(tmp_path / "ratings.csv", 30, 40, density=0.3, seed=1)
    write_movies(tmp_path / "movies.csv", 40, ["Action", "Comedy", "Drama"])
    rec = deepmovie.fit(name, data=tmp_path, split="random:0.2", device="cpu", epochs=2, quiet=True)
    assert rec.model.task == "implicit"
    assert np.isfinite(rec.summary["test_ndcg@10"])
    if name == "two-tower":
        assert rec.model.with_genres and rec.model.genres.shape == (40, 3)
