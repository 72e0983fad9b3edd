"""The CNN encoder with a KAN head: the poster's CNN + KAN module."""

from __future__ import annotations

from typing import Any

import torch

from deepmovie.models.hybrid.encoders.base import ENCODERS
from deepmovie.models.hybrid.encoders.cnn import CNNEncoder
from deepmovie.models.hybrid.encoders.kan import KANLinear


@ENCODERS.register("cnn-kan")
class CNNKANEncoder(CNNEncoder):
    """Conv features -> dropout -> KAN layer -> KAN layer to the latent space."""

    def __init__(
        self,
        vocab_size: int,
        out_dim: int,
        hidden: int = 64,
        grid: int = 8,
        dropout: float = 0.2,
        **conv: Any,
    ) -> None:
        super().__init__(vocab_size, out_dim, hidden=hidden, dropout=dropout, **conv)
        self.head = torch.nn.Sequential(
            torch.nn.Dropout(dropout),
            KANLinear(self.features.out_features, hidden, grid=grid),
            KANLinear(hidden, out_dim, grid=grid),
        )
