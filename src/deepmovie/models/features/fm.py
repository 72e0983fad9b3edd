"""Second-order factorization machine (Rendle 2010) over the feature pipeline's fields.

``y = w0 + sum_i w_i x_i + sum_{i<j} <v_i, v_j> x_i x_j`` over every active feature: the one-hot
fields (x = 1), the members of each bag (x = 1/size) and the dense features (x = the standardized
value). The pairwise sum costs O(kn), not O(kn^2), by the identity

    sum_{i<j} <v_i, v_j> x_i x_j = 1/2 sum_f [ (sum_i v_{i,f} x_i)^2 - sum_i v_{i,f}^2 x_i^2 ],

computed for a whole batch at once: per field the weighted sum of its vectors (an EmbeddingBag for
bags) and the weighted sum of their squares. Each table row holds ``[w_i, v_i]``: the linear weight is
column 0, so one lookup serves both terms.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from deepmovie.models.base import DataInfo
from deepmovie.models.features.base import FeatureModel, FeatureParams
from deepmovie.models.registry import MODELS


class FMParams(FeatureParams):
    """Defaults chosen on the validation rows of ML-100K fold u1 (never on u1.test)."""

    epochs: int = Field(60, ge=1)
    patience: int = Field(4, ge=0)
    optimizer: Literal["sgd", "adam", "adagrad"] = "adagrad"
    lr: float = Field(0.05, gt=0)
    batch_size: int = Field(512, ge=1)
    dim: int = Field(32, ge=1, description="factor size k")
    reg: float = Field(0.1, ge=0, description="L2 on x_i^2 ||v_i||^2 of the features a row uses")
    reg_linear: float = Field(0.001, ge=0, description="L2 on x_i^2 w_i^2 (the linear weights)")


def pairwise_interaction(sum_vx: torch.Tensor, sum_v2x2: torch.Tensor) -> torch.Tensor:
    """``sum_{i<j} <v_i, v_j> x_i x_j`` from ``sum_i v_i x_i`` and ``sum_i v_i^2 x_i^2`` (both (B, k))."""
    return 0.5 * (sum_vx * sum_vx - sum_v2x2).sum(-1)


def naive_pairwise(vectors: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """The O(kn^2) definition, for one row: ``vectors`` (n, k), ``values`` (n,). Tests only."""
    gram = (vectors @ vectors.T) * torch.outer(values, values)
    return torch.triu(gram, diagonal=1).sum()


@MODELS.register("fm")
class FactorizationMachine(FeatureModel):
    """Global bias + linear terms + factorized pairwise interactions of every feature."""

    Params = FMParams
    params: FMParams
    table_extra_columns = 1  # column 0: the linear weight w_i

    def __init__(self, params: FMParams, info: DataInfo) -> None:
        super().__init__(params, info)
        vectors = torch.randn(len(self.dense_names), params.dim + 1) * params.init_std
        vectors[:, 0] = 0.0
        self.dense_vectors = torch.nn.Parameter(vectors)  # [w, v] of each dense feature

    def interact(self, users, items, dense):
        vx, v2x2 = self.field_vectors(users, items, squares=True)
        if dense.shape[1]:
            d = dense.unsqueeze(-1) * self.dense_vectors
            vx, v2x2 = torch.cat([vx, d], 1), torch.cat([v2x2, d * d], 1)
        linear = vx[..., 0].sum(1)
        pairwise = pairwise_interaction(vx[..., 1:].sum(1), v2x2[..., 1:].sum(1))
        p = self.params
        return linear + pairwise, p.reg * v2x2[..., 1:].sum() + p.reg_linear * v2x2[..., 0].sum()
