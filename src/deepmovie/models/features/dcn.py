"""Deep & Cross Network (Wang et al. 2017), the notes' comparison model for DLRM.

``x0`` is the concatenation of the field vectors and the dense features. The cross network applies
``x_{l+1} = x0 (x_l . w_l) + b_l + x_l`` (explicit feature crosses of rising degree, O(d) each);
the deep network is an MLP on ``x0``; a linear layer scores their concatenation. The notes' sizes:
6 cross layers, deep 512-256, embeddings 16.
"""

from __future__ import annotations

import torch
from pydantic import Field

from deepmovie.models.base import DataInfo
from deepmovie.models.features.base import FeatureModel, NeuralFeatureParams, Sizes
from deepmovie.models.layers import mlp
from deepmovie.models.registry import MODELS


class DCNParams(NeuralFeatureParams):
    """Defaults: the dlrm ones (optimizer, reg, MLP sizes); the notes' 6 cross layers."""

    cross_layers: int = Field(6, ge=0, description="layers of the cross network")
    deep: Sizes = Field(default_factory=lambda: [256, 128], description="deep network hidden sizes")


@MODELS.register("dcn")
class DCN(FeatureModel):
    """``linear([cross(x0), deep(x0)])`` over ``x0 = [field vectors, dense features]``."""

    Params = DCNParams
    params: DCNParams

    def __init__(self, params: DCNParams, info: DataInfo) -> None:
        super().__init__(params, info)
        width = len(self.layout.fields) * params.dim + len(self.dense_names)
        self.cross_weight = torch.nn.Parameter(torch.randn(params.cross_layers, width) / width**0.5)
        self.cross_bias = torch.nn.Parameter(torch.zeros(params.cross_layers, width))
        self.deep, deep_width = mlp(width, params.deep, params.activation, params.dropout)
        self.out = torch.nn.Linear(width + (deep_width if params.deep else 0), 1)
        torch.nn.init.zeros_(self.out.bias)

    def interact(self, users, items, dense):
        vectors, _ = self.field_vectors(users, items)
        x0 = torch.cat([vectors.flatten(1), dense], 1)
        x = x0
        for layer in range(self.params.cross_layers):
            x = x0 * (x @ self.cross_weight[layer]).unsqueeze(1) + self.cross_bias[layer] + x
        parts = [x, self.deep(x0)] if self.params.deep else [x]
        score = self.out(torch.cat(parts, 1))[:, 0]
        return score, self.params.reg * (vectors * vectors).sum()
