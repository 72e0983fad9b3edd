"""One contract for every registered model (and every hybrid encoder): what the Recommender, serving
and the CLI rely on. A newly registered model or encoder is covered here without editing this file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import deepmovie
from conftest import write_movies, write_ratings
from deepmovie.errors import DeepMovieError
from deepmovie.models import MODELS
from deepmovie.models.base import FoldInUnsupported
from deepmovie.models.hybrid.encoders import ENCODERS
from deepmovie.recommender import UnknownIdError

N_USERS, N_ITEMS = 24, 30
CASES = (
    [(name, {}) for name in MODELS if name != "hybrid"]
    + [("hybrid", {"encoder": encoder}) for encoder in ENCODERS]
    + [("hybrid", {"encoder": "cnn", "biases": True})]  # biased ALS: the biases reach serving
)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("contract")
    write_ratings(folder / "ratings.csv", N_USERS, N_ITEMS, density=0.35, seed=3)
    write_movies(folder / "movies.csv", N_ITEMS, ["Action", "Comedy", "Drama", "Sci-Fi"])
    return folder


@pytest.fixture(scope="module", params=CASES, ids=["-".join([m, *map(str, p.values())]) for m, p in CASES])
def trained(request, data, tmp_path_factory):
    """(recommender fitted in memory, the same saved and loaded) for one model: two epochs, CPU."""
    name, params = request.param
    rec = deepmovie.fit(
        name, data=data, split="random:0.2", seed=0, device="cpu", epochs=2, patience=0, **params
    )
    loaded = deepmovie.load(rec.save(tmp_path_factory.mktemp("saved") / name))
    return rec, loaded


def _known_pairs(rec, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Raw ids of ``n`` random (known user, known item) pairs."""
    rng = np.random.default_rng(0)
    users = np.flatnonzero(rec.known_users)
    items = np.flatnonzero(rec.known_items)
    raw_users = rec.artifacts.user_ids.raw[rng.choice(users, n)]
    raw_items = rec.artifacts.item_ids.raw[rng.choice(items, n)]
    return raw_users, raw_items


def test_fit_reports_finite_test_figures(trained):
    rec, _ = trained
    figures = {k: v for k, v in rec.summary.items() if k.startswith("test_") and isinstance(v, float)}
    assert figures and all(np.isfinite(v) for v in figures.values()), figures


def test_predictions_are_finite_and_survive_save_and_load(trained):
    rec, loaded = trained
    users, items = _known_pairs(rec)
    predicted = rec.predict_many(users, items)
    assert predicted.shape == (len(users),) and np.isfinite(predicted).all()
    np.testing.assert_array_equal(loaded.predict_many(users, items), predicted)
    single = rec.predict(users[0], items[0])
    assert single.rating == pytest.approx(predicted[0], abs=1e-4)
    assert loaded.recommend(users[0], k=5) == rec.recommend(users[0], k=5)


def test_score_items_equals_predict_over_the_same_pairs(trained):
    rec, _ = trained
    model = rec.model
    users = torch.as_tensor(np.flatnonzero(rec.known_users)[:4])
    n_items = rec.artifacts.n_items
    with torch.no_grad():
        rows = model.score_items(users)
        pairs = model.predict(users.repeat_interleave(n_items), torch.arange(n_items).repeat(len(users)))
    torch.testing.assert_close(rows, pairs.view(len(users), n_items), rtol=1e-4, atol=1e-4)


def test_the_factor_view_scores_as_the_model_does(trained):
    rec, _ = trained
    if rec.factors is None:
        pytest.skip(f"{rec.model_name} has no factor view")
    users = np.repeat(np.flatnonzero(rec.known_users)[:5], rec.artifacts.n_items)
    items = np.tile(np.arange(rec.artifacts.n_items), 5)
    with torch.no_grad():
        expected = rec.model.predict(torch.as_tensor(users), torch.as_tensor(items)).numpy()
    np.testing.assert_allclose(rec.factors.pairs(users, items), expected, rtol=1e-4, atol=1e-4)


def test_recommend_returns_k_distinct_unseen_items(trained):
    rec, _ = trained
    for u in np.flatnonzero(rec.known_users)[:5]:
        user = rec.artifacts.user_ids.raw[u]
        result = rec.recommend(user, k=5)
        items = [m.item for m in result.items]
        seen = rec.artifacts.item_ids.raw[rec.artifacts.seen[u].indices]
        assert len(items) == 5 and len(set(items)) == 5
        assert not set(items) & set(seen.tolist())
        assert result.excluded_seen > 0


def test_unknown_ids_raise_the_projects_error(trained):
    rec, _ = trained
    users, items = _known_pairs(rec, 1)
    with pytest.raises(UnknownIdError, match="user 999999"):
        rec.predict(999999, items[0])
    with pytest.raises(UnknownIdError, match="item 999999"):
        rec.recommend_new({999999: 5.0})
    with pytest.raises(UnknownIdError, match="item"):
        rec.predict_many([users[0], users[0]], [items[0], 999999])
    with pytest.raises(UnknownIdError):
        rec.similar("not-an-item")


def test_fold_in_works_or_says_it_cannot(trained):
    rec, loaded = trained
    liked = rec.artifacts.item_ids.raw[np.flatnonzero(rec.known_items)[:3]].tolist()
    ratings = dict(zip(liked, [5.0, 4.0, 5.0], strict=True))
    try:
        result = rec.recommend_new(ratings, k=5)
    except FoldInUnsupported as exc:
        assert "cold start is not supported" in str(exc)
        with pytest.raises(FoldInUnsupported):
            loaded.recommend_new(ratings, k=5)
        assert not rec.describe()["cold_start"]
        return
    items = [m.item for m in result.items]
    assert result.cold_start and len(set(items)) == 5 and not set(items) & set(liked)
    assert all(np.isfinite(m.score) for m in result.items)
    assert loaded.recommend_new(ratings, k=5) == result
    assert rec.describe()["cold_start"]


def test_bad_k_is_an_error(trained):
    rec, _ = trained
    user = rec.artifacts.user_ids.raw[np.flatnonzero(rec.known_users)[0]]
    for k in (0, -1, 2.5):
        with pytest.raises(DeepMovieError, match="k:"):
            rec.recommend(user, k=k)
