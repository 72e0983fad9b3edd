"""CDAE (Wu et al., WSDM 2016): a denoising autoencoder with a user node, for implicit top-N.

Each user's row of *binarized* ratings (rating >= ``positive_rating`` -> 1) is corrupted by dropout
(kept entries scaled by ``1 / (1 - q)``), encoded together with a user-specific input node ``V_u``,
and decoded through a sigmoid; the loss is the cross-entropy over every item of the row. Scores rank
unseen items, so this model is judged by HR/NDCG@K with full rankings, not by RMSE.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field

from deepmovie.data.interactions import Interactions
from deepmovie.models.autoencoders.autorec import AutoRec, AutoRecParams
from deepmovie.models.base import Task
from deepmovie.models.layers import Activation, embedding
from deepmovie.models.registry import MODELS


class CDAEParams(AutoRecParams):
    """Chosen on validation NDCG@10 of ML-100K fold u1 (never on u1.test): hidden in {50, 100, 200,
    400}, corruption in {0.2, 0.5}, reg in {0.1, 1, 10}."""

    epochs: int = Field(200, ge=1)
    patience: int = Field(10, ge=0)
    batch_size: int = Field(128, ge=1, description="users per step")
    based: Literal["user"] = Field("user", description="CDAE encodes users")
    hidden: int = Field(400, ge=1, description="size of the code")
    encoder: Activation = Field("sigmoid", description="h, the encoder activation")
    decoder: Literal["sigmoid"] = Field("sigmoid", description="f: a probability per item")
    corruption: float = Field(0.5, ge=0, lt=1, description="q, the dropout rate of the input entries")
    positive_rating: float = Field(4.0, description="ratings at or above this are the positive items")
    reg: float = Field(1.0, ge=0, description="lambda of (lambda / 2) |W|^2, user nodes included")


@MODELS.register("cdae")
class CDAE(AutoRec):
    """``sigmoid(W' h(W dropout(y_u) + V_u + b) + b')`` over binarized user rows."""

    Params = CDAEParams
    params: CDAEParams

    def build(self, params: CDAEParams) -> None:  # type: ignore[override]
        super().build(params)
        self.user_node = embedding(self.n_rows, params.hidden, 0.01, sparse=False)

    @property
    def task(self) -> Task:
        return "implicit"

    def row_matrix(self, train: Interactions) -> sp.csr_matrix:
        """The positive items of each user, as ones."""
        positive = train.subset(train.ratings >= self.params.positive_rating)
        matrix = sp.csr_matrix(positive.csr())
        matrix.data = np.ones_like(matrix.data)
        return matrix

    def weights(self) -> list[torch.Tensor]:
        return [*super().weights(), self.user_node.weight]

    def logits(self, rows: torch.Tensor, corrupt: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(output logits of ``rows``, their clean binary input)."""
        clean = self._rows.dense(rows)
        noisy = torch.nn.functional.dropout(clean, self.params.corruption, training=corrupt)
        code = self.g(noisy @ self.encoder_weight + self.encoder_bias + self.user_node(rows))
        return code @ self.decoder_weight.T + self.decoder_bias, clean

    def batch_error(self, rows: torch.Tensor) -> torch.Tensor:
        logits, clean = self.logits(rows, corrupt=True)
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, clean, reduction="sum")

    def reconstruct_rows(self, rows: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(rows, corrupt=self.training)[0])
