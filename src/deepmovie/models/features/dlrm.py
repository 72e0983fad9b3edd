"""DLRM (Naumov et al. 2019): bottom MLP over dense features, one embedding table per field,
pairwise dot-product interactions, top MLP.

As in the notes: the dense features go through the bottom MLP to a vector of the embedding size, which
joins the field vectors; the dot products of every pair of those vectors (the second-order
interactions, as in a factorization machine) are concatenated with the dense vector and the top MLP
scores the row. The notes' Kaggle sizes (bottom 512-256-64, top 512-256, embeddings 16) are
``--set bottom=[512,256,64] --set top=[512,256] --set dim=16``; the bottom MLP always ends in a
projection to ``dim``. Every embedding table is one field's, laid out by
:class:`deepmovie.models.features.fields.TableLayout` so that tables can be sharded across ranks.
"""

from __future__ import annotations

import torch
from pydantic import Field

from deepmovie.models.base import DataInfo
from deepmovie.models.features.base import FeatureModel, NeuralFeatureParams, Sizes
from deepmovie.models.layers import mlp
from deepmovie.models.registry import MODELS


class DLRMParams(NeuralFeatureParams):
    """Defaults chosen on the validation rows of ML-100K fold u1 (never on u1.test)."""

    bottom: Sizes = Field(default_factory=lambda: [64], description="bottom MLP hidden sizes (then -> dim)")
    top: Sizes = Field(default_factory=lambda: [256, 128], description="top MLP hidden sizes (then -> 1)")


@MODELS.register("dlrm")
class DLRM(FeatureModel):
    """``top([bottom(dense), <z_a, z_b> for a < b])`` with ``z`` = the dense vector and the field vectors."""

    Params = DLRMParams
    params: DLRMParams

    def __init__(self, params: DLRMParams, info: DataInfo) -> None:
        super().__init__(params, info)
        n_vectors = len(self.layout.fields)
        if self.dense_names:
            self.bottom, _ = mlp(len(self.dense_names), [*params.bottom, params.dim], params.activation, 0.0)
            n_vectors += 1
        upper = torch.triu_indices(n_vectors, n_vectors, offset=1)
        self.register_buffer("pairs", upper, persistent=False)
        width = upper.shape[1] + (params.dim if self.dense_names else 0)
        self.top, width = mlp(width, params.top, params.activation, params.dropout)
        self.out = torch.nn.Linear(width, 1)
        torch.nn.init.zeros_(self.out.bias)

    def interact(self, users, items, dense):
        vectors, _ = self.field_vectors(users, items)
        parts = []
        if self.dense_names:
            bottom = self.bottom(dense)
            parts.append(bottom)
            vectors_all = torch.cat([bottom.unsqueeze(1), vectors], 1)
        else:
            vectors_all = vectors
        dots = torch.bmm(vectors_all, vectors_all.transpose(1, 2))
        parts.append(dots[:, self.pairs[0], self.pairs[1]])
        score = self.out(self.top(torch.cat(parts, 1)))[:, 0]
        return score, self.params.reg * (vectors * vectors).sum()
