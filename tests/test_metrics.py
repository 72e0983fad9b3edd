"""RMSE, MAE, AUC and log-loss against hand values; ranking metrics against a brute-force reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from deepmovie.data.interactions import Interactions, RatingScale
from deepmovie.evaluation import ColdFallback, Evaluator
from deepmovie.metrics import auc, logloss, mae, ranking_metrics, rmse
from deepmovie.models import DataInfo, Model, ModelParams


def test_rmse_and_mae_by_hand():
    predicted, actual = [1.0, 2.0, 3.0, 4.5], [1.0, 3.0, 5.0, 4.0]  # errors 0, -1, -2, 0.5
    assert rmse(predicted, actual) == pytest.approx(math.sqrt((0 + 1 + 4 + 0.25) / 4))
    assert mae(predicted, actual) == pytest.approx((0 + 1 + 2 + 0.5) / 4)
    assert rmse(actual, predicted) == rmse(predicted, actual)
    assert rmse([3.0], [3.0]) == 0.0 and mae([2.0], [5.0]) == 3.0


def test_rating_metrics_in_double_precision():
    predicted, actual = np.full(1000, 10_000.1), np.full(1000, 10_000.0)  # float32 would err by 4e-4
    assert rmse(predicted, actual) == pytest.approx(0.1, abs=1e-9)
    assert mae(predicted, actual) == pytest.approx(0.1, abs=1e-9)


def test_rating_metrics_of_nothing_are_nan():
    assert math.isnan(rmse(np.array([]), np.array([])))
    assert math.isnan(mae(np.array([]), np.array([])))


@pytest.mark.parametrize("seed", range(3))
def test_auc_is_the_share_of_correctly_ordered_pairs(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 5, 40).astype(float)  # many ties, which count one half
    labels = rng.random(40) < 0.4
    pairs = [(p, n) for p in scores[labels] for n in scores[~labels]]
    expected = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)
    assert auc(scores, labels) == pytest.approx(expected)
    assert auc(-scores, labels) == pytest.approx(1 - expected)
    assert math.isnan(auc(scores, np.ones(40, dtype=bool)))


def test_logloss_by_hand():
    assert logloss([0.9, 0.2], [1, 0]) == pytest.approx(-(math.log(0.9) + math.log(0.8)) / 2)
    assert math.isfinite(logloss([0.0, 1.0], [1, 0]))  # clipped, not infinite


class Constant(Model):
    """Predicts a fixed probability per item: a stand-in for a "like" model."""

    like_rating = 4.0

    def __init__(self, probabilities):
        super().__init__(ModelParams(), DataInfo(2, 3, RatingScale(1, 5), 3.0))
        self.register_buffer("p", torch.tensor(probabilities))

    @property
    def task(self):
        return "like"

    def predict(self, users, items):
        return self.p[items]


def test_like_models_are_judged_by_auc_and_logloss_of_rating_at_least_like_rating():
    train = Interactions(np.array([0, 1]), np.array([0, 1]), np.array([5.0, 2.0], dtype=np.float32), 2, 3)
    test = Interactions(
        np.array([0, 1, 1, 0]), np.array([0, 1, 2, 2]), np.array([4.0, 3.5, 5.0, 1.0], dtype=np.float32), 2, 3
    )
    judge = Evaluator(ColdFallback.fit(train), RatingScale(1, 5))
    model = Constant([0.9, 0.2, 0.6])
    assert judge.monitor(model) == ("auc", True)
    result = judge(model, test, train)
    labels, probabilities = [1, 0, 1, 0], [0.9, 0.2, 0.6, 0.6]
    assert result["auc"] == pytest.approx(auc(np.array(probabilities), np.array(labels, dtype=bool)))
    assert result["logloss"] == pytest.approx(logloss(probabilities, labels))
    assert result["accuracy"] == pytest.approx(0.75)
    assert result["cold_rows"] == 2  # item 2 never appears in training


def reference(scores: np.ndarray, train: np.ndarray, relevant: np.ndarray, k: int) -> dict[str, float]:
    """The textbook definitions, one user at a time."""
    n_users, n_items = scores.shape
    totals = dict.fromkeys(("hr", "ndcg", "precision", "recall", "map"), 0.0)
    shown, users = set(), 0
    for user in range(n_users):
        wanted = set(np.flatnonzero(relevant[user]).tolist())
        if not wanted:
            continue
        users += 1
        candidates = sorted((i for i in range(n_items) if not train[user, i]), key=lambda i: -scores[user, i])
        top = candidates[:k]
        shown.update(top)
        hits = [i in wanted for i in top]
        totals["hr"] += float(any(hits))
        dcg = sum(1 / math.log2(rank + 2) for rank, hit in enumerate(hits) if hit)
        ideal = sum(1 / math.log2(rank + 2) for rank in range(min(len(wanted), k)))
        totals["ndcg"] += dcg / ideal
        totals["precision"] += sum(hits) / k
        totals["recall"] += sum(hits) / len(wanted)
        found, precision_sum = 0, 0.0
        for rank, hit in enumerate(hits, start=1):
            if hit:
                found += 1
                precision_sum += found / rank
        totals["map"] += precision_sum / min(len(wanted), k)
    result = {f"{name}@{k}": value / users for name, value in totals.items()}
    result[f"coverage@{k}"] = len(shown) / n_items
    result["ranked_users"] = users
    return result


def compute(scores, train, relevant, k, batch_size=1024):
    def score(users: torch.Tensor) -> torch.Tensor:
        assert users.dtype == torch.int64
        return torch.from_numpy(scores[users.numpy()]).float()

    return ranking_metrics(
        score,
        sp.csr_matrix(train.astype(np.float32)),
        sp.csr_matrix(relevant.astype(np.float32)),
        k=k,
        batch_size=batch_size,
    )


@pytest.mark.parametrize("seed", range(8))
def test_ranking_metrics_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    n_users, n_items = int(rng.integers(5, 40)), int(rng.integers(8, 60))
    k = int(rng.integers(1, 15))
    scores = rng.random((n_users, n_items)).astype(np.float32)
    train = rng.random((n_users, n_items)) < rng.uniform(0.1, 0.6)
    relevant = (rng.random((n_users, n_items)) < 0.2) & ~train
    relevant[0] = False  # a user with nothing held out is not ranked
    expected = reference(scores, train, relevant, k)
    for batch_size in (1, 3, 1024):
        got = compute(scores, train, relevant, k, batch_size)
        assert got.keys() == expected.keys()
        for name, value in expected.items():
            assert got[name] == pytest.approx(value, abs=1e-9), (name, batch_size)


def test_training_items_are_never_recommended():
    # The model loves what the user has already rated; those must be skipped, not counted.
    scores = np.array([[10.0, 9.0, 8.0, 7.0, 6.0, 5.0]], dtype=np.float32)
    train = np.array([[1, 1, 0, 0, 0, 0]], dtype=bool)
    relevant = np.array([[0, 0, 1, 0, 1, 0]], dtype=bool)
    got = compute(scores, train, relevant, k=2)
    assert got["hr@2"] == 1.0 and got["precision@2"] == 0.5 and got["recall@2"] == 0.5
    assert got["ndcg@2"] == pytest.approx(1 / (1 + 1 / math.log2(3)))
    assert got["map@2"] == pytest.approx(0.5)
    assert got["coverage@2"] == pytest.approx(2 / 6)  # items 2 and 3


def test_fewer_unseen_items_than_k():
    """Only two items are left to recommend at K=4: the training items do not fill the list."""
    scores = np.array([[4.0, 3.0, 2.0, 1.0]], dtype=np.float32)
    train = np.array([[1, 1, 0, 0]], dtype=bool)
    relevant = np.array([[0, 0, 0, 1]], dtype=bool)
    got = compute(scores, train, relevant, k=4)
    assert got["coverage@4"] == 0.5 and got["hr@4"] == 1.0 and got["precision@4"] == 0.25
    assert got["ndcg@4"] == pytest.approx(1 / math.log2(3))
    assert got == pytest.approx(reference(scores, train, relevant, 4))


def test_hand_computed_ranking():
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5]], dtype=np.float32)
    train = np.zeros((1, 5), dtype=bool)
    relevant = np.array([[1, 0, 1, 0, 0]], dtype=bool)  # hits at ranks 1 and 3
    got = compute(scores, train, relevant, k=3)
    assert got["hr@3"] == 1.0
    assert got["precision@3"] == pytest.approx(2 / 3) and got["recall@3"] == 1.0
    assert got["ndcg@3"] == pytest.approx((1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3)))
    assert got["map@3"] == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert got["coverage@3"] == pytest.approx(3 / 5) and got["ranked_users"] == 1


@pytest.mark.parametrize("seed", range(4))
def test_extra_cutoffs_match_brute_force(seed):
    """recall@20, recall@50 and NDCG@100 come from the same top-N as the K metrics."""
    rng = np.random.default_rng(100 + seed)
    n_users, n_items = 30, int(rng.integers(40, 130))
    scores = rng.random((n_users, n_items)).astype(np.float32)
    train = rng.random((n_users, n_items)) < 0.3
    relevant = (rng.random((n_users, n_items)) < 0.2) & ~train
    extra = (("recall", 20), ("recall", 50), ("ndcg", 100))
    got = ranking_metrics(
        lambda users: torch.from_numpy(scores[users.numpy()]),
        sp.csr_matrix(train.astype(np.float32)),
        sp.csr_matrix(relevant.astype(np.float32)),
        k=10,
        batch_size=7,
        extra=extra,
    )
    assert got == pytest.approx({**got, **reference(scores, train, relevant, 10)})
    for name, cutoff in extra:
        expected = reference(scores, train, relevant, min(cutoff, n_items))
        assert got[f"{name}@{cutoff}"] == pytest.approx(expected[f"{name}@{min(cutoff, n_items)}"], abs=1e-9)
