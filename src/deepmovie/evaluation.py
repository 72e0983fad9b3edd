"""Predict and score held-out ratings, with an explicit, counted policy for cold rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from deepmovie.data.interactions import Interactions, RatingScale
from deepmovie.errors import DeepMovieError
from deepmovie.metrics import auc, logloss, mae, ranking_metrics, rmse
from deepmovie.models.base import FoldInUnsupported, Model
from deepmovie.models.baselines import bias_sweep
from deepmovie.models.layers import eval_mode

COLD_POLICY = "baseline: global mean + the known user or item bias (regularized, from training rows)"


def cold_policy(model_class: type[Model]) -> str:
    """How a model's cold test rows were predicted: by the baseline, or, for a known user and an item
    with no training rating, by the model itself where it scores such items (from their side
    information: the hybrid's encoder of the item's document)."""
    if model_class.scores_cold_items:
        return f"the model for a known user and an unrated item (its side information); else {COLD_POLICY}"
    return COLD_POLICY


PREDICT_BATCH = 1 << 18
# Beside the K metrics: the cutoffs published top-N tables report (Liang et al. 2018, Steck 2019).
RANKING_EXTRA = (("recall", 20), ("recall", 50), ("ndcg", 100))


@dataclass
class ColdFallback:
    """What predicts a rating whose user or item never appears in training."""

    mean: float
    user_bias: torch.Tensor
    item_bias: torch.Tensor
    known_users: torch.Tensor
    known_items: torch.Tensor

    @classmethod
    def fit(
        cls, train: Interactions, sweeps: int = 5, reg_user: float = 15.0, reg_item: float = 10.0
    ) -> ColdFallback:
        users = torch.as_tensor(train.users).long()
        items = torch.as_tensor(train.items).long()
        ratings = torch.as_tensor(train.ratings, dtype=torch.float32)
        mean = float(ratings.mean())
        user_bias, item_bias = torch.zeros(train.n_users), torch.zeros(train.n_items)
        for _ in range(sweeps):
            bias_sweep(users, items, ratings - mean, user_bias, item_bias, reg_user, reg_item)
        return cls(
            mean,
            user_bias,
            item_bias,
            torch.bincount(users, minlength=train.n_users) > 0,
            torch.bincount(items, minlength=train.n_items) > 0,
        )

    def cold(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return ~(self.known_users[users] & self.known_items[items])

    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        known_user, known_item = self.known_users[users], self.known_items[items]
        return (
            self.mean
            + torch.where(known_user, self.user_bias[users], 0.0)
            + torch.where(known_item, self.item_bias[items], 0.0)
        )


@torch.no_grad()
def predict_ratings(
    model: Model, fallback: ColdFallback, users: np.ndarray, items: np.ndarray, scale: RatingScale
) -> tuple[np.ndarray, np.ndarray]:
    """Clipped predictions and the cold-row mask, scored in large batches on the model's device."""
    users_t = torch.as_tensor(users).long()
    items_t = torch.as_tensor(items).long()
    cold = fallback.cold(users_t, items_t)
    out = fallback.predict(users_t, items_t)
    by_model = ~cold | (fallback.known_users[users_t] if model.scores_cold_items else False)
    warm = torch.nonzero(by_model).flatten()
    out[warm] = _batched(model, users_t[warm], items_t[warm])
    return out.clamp(scale.low, scale.high).numpy(), cold.numpy()


@dataclass
class Evaluator:
    """Scores held-out rows by the model's task; says which figure early stopping watches.

    ``seen`` (the rows a model trained on) matters to rankings: those items are never recommended.
    """

    fallback: ColdFallback
    scale: RatingScale
    k: int = 10
    relevant_rating: float = 4.0

    def monitor(self, model: Model) -> tuple[str, bool]:
        """(name of the validation figure that selects the best epoch, whether higher is better)."""
        return {"rating": ("rmse", False), "like": ("auc", True), "implicit": (f"ndcg@{self.k}", True)}[
            model.task
        ]

    def __call__(self, model: Model, data: Interactions, seen: Interactions) -> dict[str, float]:
        if model.task == "implicit":
            return rank(model, self.fallback, seen, data, self.k, self.relevant_rating)
        if model.task == "like":
            return self.like(model, data)
        return evaluate(model, self.fallback, data, self.scale)

    @torch.no_grad()
    def like(self, model: Model, data: Interactions) -> dict[str, float]:
        """AUC, log-loss and accuracy of P(rating >= like_rating); the model scores cold rows itself."""
        labels = data.ratings >= model.like_rating
        users, items = torch.as_tensor(data.users).long(), torch.as_tensor(data.items).long()
        probabilities = _batched(model, users, items).clamp(0, 1).numpy()
        return {
            "auc": auc(probabilities, labels),
            "logloss": logloss(probabilities, labels),
            "accuracy": float(np.mean((probabilities >= 0.5) == labels)) if len(labels) else float("nan"),
            "cold_rows": int(self.fallback.cold(users, items).sum()),
        }


def evaluate(
    model: Model, fallback: ColdFallback, data: Interactions, scale: RatingScale
) -> dict[str, float | int]:
    """RMSE and MAE on ``data`` plus how many rows were cold (and the family's extra figures)."""
    if len(data) == 0:
        return {"rmse": float("nan"), "mae": float("nan"), "cold_rows": 0}
    predicted, cold = predict_ratings(model, fallback, data.users, data.items, scale)
    return {
        "rmse": rmse(predicted, data.ratings),
        "mae": mae(predicted, data.ratings),
        "cold_rows": int(cold.sum()),
        **_extra(model, data),
    }


@torch.no_grad()
def _extra(model: Model, data: Interactions) -> dict[str, float]:
    device = model.device
    with eval_mode(model):
        return model.extra_metrics(
            torch.as_tensor(data.users, device=device).long(),
            torch.as_tensor(data.items, device=device).long(),
            torch.as_tensor(data.ratings, device=device).float(),
        )


def _batched(model: Model, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """``model.predict`` over all pairs in large batches on the model's device, in eval mode."""
    out, device = torch.empty(len(users)), model.device
    with eval_mode(model):
        for start in range(0, len(users), PREDICT_BATCH):
            rows = slice(start, start + PREDICT_BATCH)
            out[rows] = model.predict(users[rows].to(device), items[rows].to(device)).float().cpu()
    return out


@torch.no_grad()
def rank(
    model: Model,
    fallback: ColdFallback,
    seen: Interactions,
    test: Interactions,
    k: int,
    relevant_rating: float,
    batch_size: int = 256,
) -> dict[str, float]:
    """Top-K metrics over full item rankings: test items rated >= ``relevant_rating`` are relevant,
    items seen in ``seen`` are excluded, and items never seen in training are not recommended."""
    unknown = ~fallback.known_items

    def score(users: torch.Tensor) -> torch.Tensor:
        scores = model.score_items(users.long().to(model.device)).float().cpu()
        scores[:, unknown] = -torch.inf
        return scores

    relevant = test.subset(test.ratings >= relevant_rating).csr()
    with eval_mode(model):
        return ranking_metrics(score, seen.csr(), relevant, k=k, batch_size=batch_size, extra=RANKING_EXTRA)


@torch.no_grad()
def strong_generalization(
    model: Model, history: Interactions, test: Interactions, evaluator: Evaluator
) -> dict[str, Any]:
    """Held-out users, never trained on: each is folded in from ``history`` (their visible ratings)
    without retraining, then judged on ``test``: the ranking metrics, and RMSE/MAE for rating models.

    Every held-out user's score row is computed once (users x items, the protocol's few hundred users).
    """
    users = np.unique(test.users)
    visible = history.csr()
    try:
        with eval_mode(model):
            rows = np.stack([_folded(model, visible, u) for u in users])
    except FoldInUnsupported as exc:
        raise DeepMovieError(f"strong generalization scores held-out users by fold-in: {exc}") from None
    position = np.full(test.n_users, -1)
    position[users] = np.arange(len(users))
    scores = torch.from_numpy(rows)
    relevant = test.subset(test.ratings >= evaluator.relevant_rating).csr()
    ranking = ranking_metrics(
        lambda batch: scores[position[batch.numpy()]], visible, relevant, k=evaluator.k, extra=RANKING_EXTRA
    )
    # As the evaluator reports them: a ranking model's figures are its own, others' sit under "ranking".
    figures: dict[str, Any] = {"cold_rows": 0, "fold_in_users": len(users)}
    figures.update(ranking if model.task == "implicit" else {"ranking": ranking})
    if model.task == "rating":
        predicted = rows[position[test.users], test.items].clip(evaluator.scale.low, evaluator.scale.high)
        figures.update(rmse=rmse(predicted, test.ratings), mae=mae(predicted, test.ratings))
    return figures


def _folded(model: Model, visible: sp.csr_matrix, user: int) -> np.ndarray:
    span = slice(visible.indptr[user], visible.indptr[user + 1])
    return np.asarray(model.fold_in(visible.indices[span], visible.data[span]), dtype=np.float64)
