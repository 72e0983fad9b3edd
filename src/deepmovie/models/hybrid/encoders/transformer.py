"""A small Transformer encoder over the words (learned positions), mean-pooled over the real positions."""

from __future__ import annotations

import torch

from deepmovie.models.hybrid.encoders.base import ENCODERS, WordEmbedding, masked_mean


@ENCODERS.register("transformer")
class TransformerEncoder(torch.nn.Module):
    def __init__(
        self,
        vocab_size: int,
        out_dim: int,
        embed_dim: int = 64,
        heads: int = 4,
        layers: int = 2,
        max_length: int = 300,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.embed = WordEmbedding(vocab_size, embed_dim)
        self.position = torch.nn.Embedding(max_length, embed_dim)
        layer = torch.nn.TransformerEncoderLayer(
            embed_dim, heads, dim_feedforward=2 * embed_dim, dropout=dropout, batch_first=True
        )
        self.encoder = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = torch.nn.Linear(embed_dim, out_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = tokens != 0
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.embed(tokens) + self.position(positions)
        attend = mask.clone()
        attend[:, 0] = True  # an empty document still attends somewhere (its pooled vector stays 0)
        states = self.encoder(x, src_key_padding_mask=~attend)
        return self.head(masked_mean(states, mask))
