"""PMF trained by the poster's alternating closed-form updates (ALS), vectorized over all users/items."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field

from deepmovie.data.interactions import Interactions
from deepmovie.engine import distributed
from deepmovie.models.base import DataInfo, Model, ModelParams
from deepmovie.models.factorization.als import PaddedRows, solve_rows
from deepmovie.models.factors import Factors, to_numpy
from deepmovie.models.registry import MODELS


class PMFParams(ModelParams):
    epochs: int = Field(20, ge=1, description="ALS sweeps (users, then items)")
    factors: int = Field(50, ge=1)
    reg_user: float = Field(0.1, gt=0, description="lambda_U")
    reg_item: float = Field(0.1, gt=0, description="lambda_V")
    reg_by_count: bool = Field(True, description="scale lambda by each row's rating count (ALS-WR)")
    center: bool = Field(True, description="factorize ratings minus the training mean")
    biases: bool = Field(False, description="solve a bias per user and per item with the factors")
    reg_bias: float = Field(0.1, ge=0, description="ridge weight of each bias (scaled as the others)")
    init_std: float = Field(0.1, gt=0)
    solve_budget: int = Field(1 << 20, ge=1024, description="padded ratings per batched solve (memory)")


@MODELS.register("pmf")
class PMF(Model):
    """``R ~ U^T V`` (+ the mean), each side solved exactly given the other."""

    Params = PMFParams
    params: PMFParams

    def __init__(self, params: PMFParams, info: DataInfo) -> None:
        super().__init__(params, info)
        self.register_buffer("user_factors", torch.randn(info.n_users, params.factors) * params.init_std)
        self.register_buffer("item_factors", torch.randn(info.n_items, params.factors) * params.init_std)
        self.register_buffer("mean", torch.tensor(info.global_mean if params.center else 0.0))
        if params.biases:
            self.register_buffer("user_bias", torch.zeros(info.n_users))
            self.register_buffer("item_bias", torch.zeros(info.n_items))

    def prepare(self, train: Interactions, seed: int) -> None:
        device = self.device
        self.mean.fill_(float(train.ratings.mean()) if self.params.center else 0.0)
        by_user = train.csr()
        by_item = sp.csr_matrix(by_user.T)
        by_item.sort_indices()
        mean, budget = float(self.mean), self.params.solve_budget
        part = (distributed.rank(), distributed.world_size())  # torchrun: each rank solves its share
        self._by_user = PaddedRows.from_csr(by_user, by_user.data - mean, device, budget, part)
        self._by_item = PaddedRows.from_csr(by_item, by_item.data - mean, device, budget, part)
        self._n_train = len(train)

    def train_epoch(self, epoch: int) -> float:
        self.sweep_users()
        return self.sweep_items() / max(self._n_train, 1)

    def sweep_users(self) -> float:
        return solve_rows(
            self._by_user,
            self.item_factors,
            self.user_factors,
            self.params.reg_user,
            reg_by_count=self.params.reg_by_count,
            **self._bias_terms(self.item_bias, self.user_bias) if self.params.biases else {},
        )

    def sweep_items(self, prior: torch.Tensor | None = None, bias_prior: torch.Tensor | None = None) -> float:
        """Item update; ``prior`` (the hybrid's encoder output) is the point lambda_V pulls toward, and
        ``bias_prior`` the one the item biases' ridge pulls toward (0 without it).

        Returns the squared error of the training ratings after the update (masked padding).
        """
        return solve_rows(
            self._by_item,
            self.user_factors,
            self.item_factors,
            self.params.reg_item,
            center=prior,
            reg_by_count=self.params.reg_by_count,
            **self._bias_terms(self.user_bias, self.item_bias, bias_prior) if self.params.biases else {},
        )

    def _bias_terms(
        self, fixed: torch.Tensor, out: torch.Tensor, center: torch.Tensor | None = None
    ) -> dict[str, Any]:
        return {"fixed_bias": fixed, "out_bias": out, "reg_bias": self.params.reg_bias, "bias_center": center}

    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        dots = (self.user_factors[users] * self.item_factors[items]).sum(-1)
        if self.params.biases:
            return self.mean + self.user_bias[users] + self.item_bias[items] + dots
        return self.mean + dots

    def factors(self) -> Factors:
        n_users, n_items = self.info.n_users, self.info.n_items
        biased = self.params.biases
        return Factors(
            float(self.mean),
            to_numpy(self.user_factors),
            to_numpy(self.user_bias) if biased else np.zeros(n_users, np.float32),
            to_numpy(self.item_factors),
            to_numpy(self.item_bias) if biased else np.zeros(n_items, np.float32),
            self.params.reg_user,
            self.params.reg_bias if biased else None,
            self.params.reg_by_count,
        )
