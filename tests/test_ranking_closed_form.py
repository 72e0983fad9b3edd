"""Popularity, item-kNN and EASE against dense references, on planted structure, and through ``fit``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

import deepmovie
import deepmovie.models.ranking.ease as ease_module
import deepmovie.models.ranking.item_knn as knn_module
import deepmovie.models.ranking.popularity  # registers popularity
from conftest import write_ratings
from deepmovie import machine
from deepmovie.data.interactions import Interactions, RatingScale
from deepmovie.errors import DeepMovieError
from deepmovie.models import MODELS, DataInfo

MODEL_NAMES = ["popularity", "item-knn", "ease"]


def interactions(n_users: int = 30, n_items: int = 25, density: float = 0.3, seed: int = 0) -> Interactions:
    rng = np.random.default_rng(seed)
    users, items = np.nonzero(rng.random((n_users, n_items)) < density)
    values = rng.integers(1, 6, len(users)).astype(np.float32)
    return Interactions(users.astype(np.int32), items.astype(np.int32), values, n_users, n_items)


def two_groups(n_users: int = 40, n_items: int = 30, per_user: int = 8, seed: int = 0) -> Interactions:
    """Even users interact only with items 0..n/2, odd users only with the rest."""
    rng = np.random.default_rng(seed)
    half = n_items // 2
    users, items = [], []
    for user in range(n_users):
        block = np.arange(half) if user % 2 == 0 else np.arange(half, n_items)
        users += [user] * per_user
        items += rng.choice(block, per_user, replace=False).tolist()
    return Interactions(
        np.array(users, np.int32),
        np.array(items, np.int32),
        np.full(len(users), 5.0, np.float32),
        n_users,
        n_items,
    )


def trained(name: str, train: Interactions, **params):
    cls = MODELS.get(name)
    info = DataInfo(train.n_users, train.n_items, RatingScale(1, 5), float(train.ratings.mean()))
    model = cls(cls.Params(**params), info)
    model.prepare(train, seed=0)
    loss = model.train_epoch(1)
    assert math.isfinite(loss)
    return model.eval()


def dense(train: Interactions, positive: float = 0.0) -> np.ndarray:
    matrix = np.zeros((train.n_users, train.n_items))
    kept = train.ratings >= positive
    matrix[train.users[kept], train.items[kept]] = 1.0
    return matrix


# --- against dense references -------------------------------------------------------------------


def test_popularity_counts_interactions_and_scores_every_user_alike():
    train = interactions()
    model = trained("popularity", train, positive_rating=3.0)
    counts = dense(train, 3.0).sum(0)
    users = torch.tensor([0, 4, 4, 7])
    scores = model.score_items(users)
    np.testing.assert_array_equal(scores.numpy(), np.tile(counts, (4, 1)))
    np.testing.assert_array_equal(model.fold_in(np.array([1, 2]), np.array([5.0, 5.0])), counts)
    items = torch.tensor([0, 3, 9, 24])
    np.testing.assert_array_equal(model.predict(users, items).numpy(), counts[items.numpy()])


def test_ease_equals_the_closed_form_and_reports_its_reconstruction_error(monkeypatch):
    base = interactions(40, 23)  # items 23 and 24 have no interaction: they stay out of the solve
    train = Interactions(base.users, base.items, base.ratings, 40, 25)
    reg = 7.0
    x = dense(train)
    p = np.linalg.inv(x.T @ x + reg * np.eye(x.shape[1]))
    expected = -p / np.diag(p)
    np.fill_diagonal(expected, 0.0)
    monkeypatch.setattr(ease_module, "BLOCK", 23 * 4)  # several Gram and inverse blocks
    model = trained("ease", train, reg=reg)
    assert len(model._active) == 23
    np.testing.assert_allclose(model.item_weights.numpy(), expected, atol=1e-6)
    reconstruction = ((x - x @ expected) ** 2).sum() / x.sum()
    assert model.train_epoch(1) == pytest.approx(reconstruction, rel=1e-6)
    users = torch.arange(5)
    np.testing.assert_allclose(model.score_items(users).numpy(), x[:5] @ expected, atol=1e-5)


@pytest.mark.parametrize(
    "params", [{"input": "rating"}, {"target_rating": 4.0}, {"input": "rating", "target_rating": 3.0}]
)
def test_ease_graded_is_each_columns_ridge_regression_without_itself(monkeypatch, params):
    """Column j of B is the ridge regression of item j's targets on every other item's inputs."""
    base = interactions(40, 23)
    train = Interactions(base.users, base.items, base.ratings, 40, 25)
    reg = 3.0
    monkeypatch.setattr(ease_module, "BLOCK", 23 * 4)
    model = trained("ease", train, reg=reg, **params)
    x = np.zeros((40, 25))
    x[train.users, train.items] = train.ratings if params.get("input") == "rating" else 1.0
    target = params.get("target_rating")
    y = x.copy() if target is None else dense(Interactions(*_liked(train, target), 40, 25))
    weights = model.item_weights.numpy()
    for j in range(23):
        others = [i for i in range(23) if i != j]
        a = x[:, others]
        expected = np.linalg.solve(a.T @ a + reg * np.eye(len(others)), a.T @ y[:, j])
        np.testing.assert_allclose(weights[others, j], expected, atol=2e-5)
        assert weights[j, j] == 0.0
    np.testing.assert_allclose(model.item_neighbours(np.array([3, 7])), weights[[3, 7]])
    np.testing.assert_allclose(
        model.item_neighbours(np.array([3, 7]), np.array([9, 0])), weights[[3, 7]][:, [9, 0]]
    )
    np.testing.assert_allclose(model.score_items(torch.arange(4)).numpy(), x[:4] @ weights, atol=1e-4)
    np.testing.assert_allclose(
        model.fold_in(train.items[train.users == 2], train.ratings[train.users == 2]),
        x[2] @ weights,
        atol=1e-4,
    )


def test_ease_graded_with_binary_ratings_is_stecks_ease():
    base = interactions(30, 20)
    ones = Interactions(base.users, base.items, np.ones_like(base.ratings), 30, 20)
    steck = trained("ease", ones, reg=5.0).item_weights.numpy()
    graded = trained("ease", ones, reg=5.0, input="rating").item_weights.numpy()
    np.testing.assert_allclose(graded, steck, atol=1e-5)


def _liked(train: Interactions, target: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    kept = train.ratings >= target
    return train.users[kept], train.items[kept], train.ratings[kept]


def test_item_knn_neighbours_are_the_rows_of_s():
    train = interactions(40, 21)
    model = trained("item-knn", train, neighbours=5)
    s = knn_matrix(model)
    np.testing.assert_allclose(model.item_neighbours(np.array([0, 4, 20])), s[[0, 4, 20]], atol=1e-6)
    page = np.array([5, 1, 20])
    np.testing.assert_allclose(
        model.item_neighbours(np.array([0, 4, 20]), page), s[[0, 4, 20]][:, page], atol=1e-6
    )


def test_the_block_inverse_equals_the_inverse_whatever_the_block(monkeypatch):
    rng = np.random.default_rng(1)
    a = rng.normal(size=(60, 60))
    g = torch.as_tensor(a @ a.T / 60 + np.eye(60))
    reference = torch.linalg.inv(g)
    for block in (60, 60 * 7, 1 << 24):  # column blocks of 1 and 7 items, then one block of all
        monkeypatch.setattr(ease_module, "BLOCK", block)
        inverse = ease_module.invert_in_place(torch.linalg.cholesky(g))
        torch.testing.assert_close(inverse, reference, rtol=1e-9, atol=1e-9)


def knn_reference(train: Interactions, shrink: float, neighbours: int) -> np.ndarray:
    """S[i, j]: shrunk cosine, zero diagonal; column j keeps its ``neighbours`` largest (by a stable sort)."""
    x = dense(train)
    counts = x.sum(0)
    similarity = (x.T @ x) / (np.sqrt(np.outer(counts, counts)) + shrink + 1e-300)
    np.fill_diagonal(similarity, 0.0)
    pruned = np.zeros_like(similarity)
    for j in range(similarity.shape[1]):
        keep = np.argsort(-similarity[:, j], kind="stable")[:neighbours]
        pruned[keep, j] = similarity[keep, j]
    return pruned


def knn_matrix(model) -> np.ndarray:
    return model.similarity_t().to_dense().T.numpy()


@pytest.mark.parametrize("shrink", [0.0, 5.0])
def test_item_knn_without_pruning_is_the_shrunk_cosine(monkeypatch, shrink):
    train = interactions(40, 21)
    monkeypatch.setattr(knn_module, "BLOCK", 21 * 4)  # blocks of 4 items
    model = trained("item-knn", train, shrink=shrink, neighbours=100)
    expected = knn_reference(train, shrink, 20)
    np.testing.assert_allclose(knn_matrix(model), expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        model.score_items(torch.arange(6)).numpy(), dense(train)[:6] @ expected, rtol=1e-5, atol=1e-6
    )


def test_item_knn_keeps_each_items_k_most_similar_neighbours(monkeypatch):
    train = interactions(60, 30, density=0.4, seed=2)
    monkeypatch.setattr(knn_module, "BLOCK", 30 * 7)
    kept = knn_matrix(trained("item-knn", train, shrink=2.0, neighbours=4))
    full = knn_reference(train, 2.0, 29)
    assert ((kept != 0).sum(0) <= 4).all()
    for j in range(30):  # the kept values are the column's four largest (ties may pick either item)
        np.testing.assert_allclose(np.sort(kept[:, j])[-4:], np.sort(full[:, j])[-4:], rtol=1e-5)
        nonzero = kept[:, j] != 0
        np.testing.assert_allclose(kept[nonzero, j], full[nonzero, j], rtol=1e-5)


def test_item_knn_normalize_makes_each_neighbourhood_sum_to_one():
    kept = knn_matrix(trained("item-knn", interactions(), neighbours=5, normalize=True))
    sums = kept.sum(0)
    np.testing.assert_allclose(sums[sums > 0], 1.0, rtol=1e-5)


# --- planted structure and fold-in ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["item-knn", "ease"])
def test_recommendations_stay_in_the_users_group(name):
    train = two_groups()
    model = trained(name, train, **({"reg": 5.0} if name == "ease" else {}))
    users = torch.arange(train.n_users)
    scores = model.score_items(users).numpy()
    seen = dense(train) > 0
    scores[seen] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :5]
    in_first_half = top < train.n_items // 2
    assert in_first_half[0::2].all() and not in_first_half[1::2].any()


@pytest.mark.parametrize("name", ["item-knn", "ease"])
def test_fold_in_of_a_training_users_history_is_their_score_row(name):
    train = interactions()
    model = trained(name, train, positive_rating=3.0)
    for user in (0, 5, 17):
        mine = train.users == user
        folded = model.fold_in(train.items[mine], train.ratings[mine])
        np.testing.assert_allclose(folded, model.score_items(torch.tensor([user]))[0].numpy(), atol=1e-6)


def test_personal_models_rank_far_better_than_popularity(tmp_path):
    """Two user groups with their own halves of the catalogue, the first half more popular: popularity
    recommends it to everyone, a personal model only to its group."""
    rng = np.random.default_rng(5)
    lines = ["userId,movieId,rating"]
    for user in range(80):
        block = np.arange(20) if user % 2 == 0 else np.arange(20, 40)
        count = 12 if user % 2 == 0 else 8
        lines += [f"{user + 1},{item + 1},5" for item in rng.choice(block, count, replace=False)]
    (tmp_path / "ratings.csv").write_text("\n".join(lines) + "\n")
    ndcg = {
        name: deepmovie.fit(name, data=tmp_path, split="random:0.2", seed=0, device="cpu").summary[
            "test_ndcg@10"
        ]
        for name in MODEL_NAMES
    }
    assert ndcg["item-knn"] > ndcg["popularity"] + 0.1, ndcg
    assert ndcg["ease"] > ndcg["popularity"] + 0.1, ndcg


# --- settings, memory, the whole path ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("ease", {"reg": 0.0}),
        ("ease", {"tol": 0.1}),
        ("item-knn", {"neighbours": 0}),
        ("item-knn", {"shrink": -1.0}),
        ("item-knn", {"k": 10}),
        ("popularity", {"epochs": 0}),
    ],
)
def test_bad_settings_are_refused(name, params):
    with pytest.raises(ValidationError):
        MODELS.get(name).Params(**params)


def test_defaults():
    assert MODELS.get("ease").Params().reg == 500.0
    knn = MODELS.get("item-knn").Params()
    assert (knn.neighbours, knn.shrink, knn.normalize) == (100, 10.0, False)
    for name in MODEL_NAMES:
        assert MODELS.get(name).Params().epochs == 1


def test_ease_refuses_a_catalogue_that_does_not_fit_before_allocating(monkeypatch):
    monkeypatch.setattr(machine, "free_memory", lambda device: 30 * 10**9)  # a budget of 24 GB
    cls = MODELS.get("ease")
    model = cls(cls.Params(), DataInfo(10, 200_000, RatingScale(1, 5), 3.0))
    assert model.item_weights.numel() == 0  # building it allocated nothing item x item
    items = np.arange(200_000, dtype=np.int32)  # every item has an interaction
    train = Interactions(items % 10, items, np.ones(len(items), np.float32), 10, 200_000)
    with pytest.raises(
        DeepMovieError,
        match=r"200,000 items need 80\d GB, over the 24 GB limit \(80% of the 30 GB this machine has free\)",
    ):
        model.prepare(train, seed=0)
    rare = Interactions(items[:2] % 10, items[:2], np.ones(2, np.float32), 10, 200_000)
    with pytest.raises(DeepMovieError, match=r"200,000 items \(2 with interactions\) need 160 GB"):
        model.prepare(rare, seed=0)


def test_ease_holds_to_the_runs_max_memory():
    """--max-memory bounds a model's own working set too, not only its weights."""
    train = Interactions(np.arange(40) % 10, np.arange(40), np.ones(40, np.float32), 10, 40)
    cls = MODELS.get("ease")
    model = cls(cls.Params(), DataInfo(10, 40, RatingScale(1, 5), 3.0))
    model.prepare(train, seed=0)  # 40 items: a few kB, within any machine's free memory
    model.memory_limit = 1000
    with pytest.raises(DeepMovieError, match=r"40 items need .* kB, over the 1 kB limit \(--max-memory\)"):
        model.prepare(train, seed=0)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_fit_reports_finite_ranking_figures_and_survives_save_and_load(name, tmp_path):
    write_ratings(tmp_path / "ratings.csv", 30, 40, density=0.3, seed=1)
    rec = deepmovie.fit(name, data=tmp_path, split="random:0.2", device="cpu", epochs=2)
    assert np.isfinite(rec.summary["test_ndcg@10"]) and rec.summary["test_ndcg@10"] > 0
    loaded = deepmovie.load(rec.save(tmp_path / "run"))
    users = rec.artifacts.user_ids.raw[np.flatnonzero(rec.known_users)[:4]]
    for user in users:
        assert loaded.recommend(user, k=5) == rec.recommend(user, k=5)
    with torch.no_grad():
        rows = torch.as_tensor(np.flatnonzero(rec.known_users)[:4])
        torch.testing.assert_close(
            loaded.model.score_items(rows), rec.model.score_items(rows), rtol=0, atol=0
        )
