"""Baselines every model must beat: the global mean, and regularized user + item biases by ALS."""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field

from deepmovie.data.interactions import Interactions
from deepmovie.models.base import DataInfo, Model, ModelParams
from deepmovie.models.factors import Factors, to_numpy
from deepmovie.models.registry import MODELS


def bias_sweep(
    users: torch.Tensor,
    items: torch.Tensor,
    residual: torch.Tensor,
    user_bias: torch.Tensor,
    item_bias: torch.Tensor,
    reg_user: float,
    reg_item: float,
) -> None:
    """One ALS sweep on ``residual ~ b_u + b_i`` in place: items first, then users (as Surprise)."""
    item_count = torch.bincount(items, minlength=len(item_bias)).to(residual.dtype)
    user_count = torch.bincount(users, minlength=len(user_bias)).to(residual.dtype)
    item_sum = torch.zeros_like(item_bias).index_add_(0, items, residual - user_bias[users])
    item_bias.copy_(item_sum / (reg_item + item_count))
    user_sum = torch.zeros_like(user_bias).index_add_(0, users, residual - item_bias[items])
    user_bias.copy_(user_sum / (reg_user + user_count))


class GlobalMeanParams(ModelParams):
    epochs: int = Field(1, ge=1)


@MODELS.register("global-mean")
class GlobalMean(Model):
    """Predicts the mean training rating for everyone."""

    Params = GlobalMeanParams

    def __init__(self, params: GlobalMeanParams, info: DataInfo) -> None:
        super().__init__(params, info)
        self.register_buffer("mean", torch.tensor(info.global_mean, dtype=torch.float32))

    def prepare(self, train: Interactions, seed: int) -> None:
        self._ratings = torch.as_tensor(train.ratings, device=self.device)

    def train_epoch(self, epoch: int) -> float:
        self.mean.fill_(float(self._ratings.mean()))
        return float(((self._ratings - self.mean) ** 2).mean())

    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.mean.expand(len(users))

    def factors(self) -> Factors:
        n_users, n_items = self.info.n_users, self.info.n_items
        return Factors(
            float(self.mean),
            np.zeros((n_users, 0), np.float32),
            np.zeros(n_users, np.float32),
            np.zeros((n_items, 0), np.float32),
            np.zeros(n_items, np.float32),
            0.0,
            None,
            reg_by_count=False,
        )


class BiasParams(ModelParams):
    epochs: int = Field(10, ge=1)
    reg_user: float = Field(15.0, ge=0, description="L2 on user biases")
    reg_item: float = Field(10.0, ge=0, description="L2 on item biases")


@MODELS.register("bias")
class Bias(Model):
    """``mu + b_u + b_i`` with regularized biases solved by alternating least squares."""

    Params = BiasParams

    def __init__(self, params: BiasParams, info: DataInfo) -> None:
        super().__init__(params, info)
        self.register_buffer("mean", torch.tensor(info.global_mean, dtype=torch.float32))
        self.register_buffer("user_bias", torch.zeros(info.n_users))
        self.register_buffer("item_bias", torch.zeros(info.n_items))

    def prepare(self, train: Interactions, seed: int) -> None:
        device = self.device
        self._users = torch.as_tensor(train.users, device=device).long()
        self._items = torch.as_tensor(train.items, device=device).long()
        self._ratings = torch.as_tensor(train.ratings, device=device)
        self.mean.fill_(float(self._ratings.mean()))

    def train_epoch(self, epoch: int) -> float:
        bias_sweep(
            self._users,
            self._items,
            self._ratings - self.mean,
            self.user_bias,
            self.item_bias,
            self.params.reg_user,
            self.params.reg_item,
        )
        error = self.predict(self._users, self._items) - self._ratings
        return float((error * error).mean())

    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.mean + self.user_bias[users] + self.item_bias[items]

    def factors(self) -> Factors:
        n_users, n_items = self.info.n_users, self.info.n_items
        return Factors(
            float(self.mean),
            np.zeros((n_users, 0), np.float32),
            to_numpy(self.user_bias),
            np.zeros((n_items, 0), np.float32),
            to_numpy(self.item_bias),
            0.0,
            self.params.reg_user,  # b_u = sum(r - mu - b_i) / (reg_user + n): the model's own ALS step
            reg_by_count=False,
        )
