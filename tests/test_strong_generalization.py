"""``users:N``: held-out users are folded in from their visible ratings, never trained on, and judged
on the rest: what serving a new user does, measured offline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import deepmovie
from conftest import write_ratings
from deepmovie.errors import DeepMovieError
from deepmovie.evaluation import Evaluator, strong_generalization
from deepmovie.metrics import ranking_metrics
from deepmovie.splits import make_splits


@pytest.fixture(scope="module")
def ratings(tmp_path_factory):
    return write_ratings(tmp_path_factory.mktemp("strong") / "r.csv", n_users=60, n_items=40, density=0.4)


def test_held_out_users_are_scored_by_their_fold_in(ratings):
    rec = deepmovie.fit("bias", data=ratings, split="users:10", seed=1, device="cpu", rank_k=5)
    s = rec.summary
    assert s["test_fold_in_users"] == 10 and s["cold_test_rows"] == 0
    assert np.isfinite(s["test_rmse"]) and 0 <= s["ranking"]["ndcg@5"] <= 1
    assert {"recall@20", "recall@50", "ndcg@100"} <= s["ranking"].keys()
    # The bias model's own fold-in, by hand: b_u = sum(r - mu - b_i) / (reg_user + n), then mu + b_u + b_i.
    (split,) = make_splits(deepmovie.Dataset.from_path(ratings), "users:10", seed=1)
    model = rec.model
    mu, b_i, reg = float(model.mean), model.item_bias.numpy(), model.params.reg_user
    visible, test = split.fold_in.csr(), split.test
    predicted = []
    for user, item in zip(test.users, test.items, strict=True):
        items, values = visible[user].indices, visible[user].data
        b_u = (values - mu - b_i[items]).sum() / (reg + len(items))
        predicted.append(np.clip(mu + b_u + b_i[item], 1, 5))
    expected = float(np.sqrt(np.mean((np.array(predicted) - test.ratings) ** 2)))
    assert s["test_rmse"] == pytest.approx(expected, rel=1e-5)


def test_a_model_that_cannot_fold_in_is_refused_in_one_line(ratings):
    rec = deepmovie.fit("deepmf", data=ratings, seed=0, device="cpu", epochs=1)
    (split,) = make_splits(deepmovie.Dataset.from_path(ratings), "users:5", seed=0)
    judge = Evaluator(None, rec.artifacts.scale)
    with pytest.raises(DeepMovieError, match=r"strong generalization .* cold start is not supported"):
        strong_generalization(rec.model, split.fold_in, split.test, judge)


@pytest.mark.parametrize("model", ["ease", "item-knn", "ials", "multvae"])
def test_the_offline_figure_is_what_serving_a_new_user_returns(ratings, model):
    """``users:N``'s NDCG equals that of the lists ``recommend_new`` serves each held-out user from
    their visible ratings: the offline protocol measures the serving path itself."""
    params = {"epochs": 3} if model in ("ials", "multvae") else {}
    rec = deepmovie.fit(model, data=ratings, split="users:12", seed=2, device="cpu", rank_k=5, **params)
    (split,) = make_splits(deepmovie.Dataset.from_path(ratings), "users:12", seed=2)
    visible, relevant = split.fold_in.csr(), split.test.subset(split.test.ratings >= 4.0).csr()
    raw_items = rec.artifacts.item_ids.raw
    index = {raw: i for i, raw in enumerate(raw_items.tolist())}
    served = {}
    for user in np.flatnonzero(np.diff(relevant.indptr) > 0):
        row = slice(visible.indptr[user], visible.indptr[user + 1])
        given = dict(zip(raw_items[visible.indices[row]].tolist(), visible.data[row].tolist(), strict=True))
        items = rec.recommend_new(given, k=5, explain=False).items
        served[int(user)] = [index[item.item] for item in items]

    def score(users: torch.Tensor) -> torch.Tensor:
        scores = torch.full((len(users), visible.shape[1]), -torch.inf, dtype=torch.float64)
        for r, user in enumerate(users.tolist()):
            scores[r, served[user]] = torch.arange(len(served[user]), 0, -1, dtype=torch.float64)
        return scores

    figures = ranking_metrics(score, visible, relevant, k=5)
    assert len(served) > 5
    assert figures["ndcg@5"] == pytest.approx(rec.summary["test_ndcg@5"], abs=1e-9)
    assert figures["recall@5"] == pytest.approx(rec.summary["test_recall@5"], abs=1e-9)
