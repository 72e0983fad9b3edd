"""Predict and score held-out ratings, with an explicit, counted policy for cold rows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from deepmovie.data.interactions import Interactions, RatingScale
from deepmovie.metrics import mae, ranking_metrics, rmse
from deepmovie.models.base import Model
from deepmovie.models.baselines import bias_sweep

COLD_POLICY = "baseline: global mean + the known user or item bias (regularized, from training rows)"
PREDICT_BATCH = 1 << 18


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
    was_training = model.training
    model.eval()
    users_t = torch.as_tensor(users).long()
    items_t = torch.as_tensor(items).long()
    cold = fallback.cold(users_t, items_t)
    out = fallback.predict(users_t, items_t)
    warm = torch.nonzero(~cold).flatten()
    device = model.device
    for start in range(0, len(warm), PREDICT_BATCH):
        rows = warm[start : start + PREDICT_BATCH]
        out[rows] = model.predict(users_t[rows].to(device), items_t[rows].to(device)).float().cpu()
    model.train(was_training)
    return out.clamp(scale.low, scale.high).numpy(), cold.numpy()


def evaluate(
    model: Model, fallback: ColdFallback, data: Interactions, scale: RatingScale
) -> dict[str, float | int]:
    """RMSE and MAE on ``data`` plus how many rows were cold."""
    if len(data) == 0:
        return {"rmse": float("nan"), "mae": float("nan"), "cold_rows": 0}
    predicted, cold = predict_ratings(model, fallback, data.users, data.items, scale)
    return {
        "rmse": rmse(predicted, data.ratings),
        "mae": mae(predicted, data.ratings),
        "cold_rows": int(cold.sum()),
    }


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
    was_training = model.training
    model.eval()
    n_items = seen.n_items
    all_items = torch.arange(n_items)
    unknown = ~fallback.known_items

    def score(users: torch.Tensor) -> torch.Tensor:
        pairs_users = users.long().repeat_interleave(n_items).to(model.device)
        pairs_items = all_items.repeat(len(users)).to(model.device)
        scores = model.predict(pairs_users, pairs_items).float().cpu().view(len(users), n_items)
        scores[:, unknown] = -torch.inf
        return scores

    relevant = test.subset(test.ratings >= relevant_rating).csr()
    result = ranking_metrics(score, seen.csr(), relevant, k=k, batch_size=batch_size)
    model.train(was_training)
    return result
