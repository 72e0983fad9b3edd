"""A small pre-norm Transformer encoder over the words, pooled by a learned attention query.

What makes it train as well as the convolutional encoders inside the hybrid's alternating loop (each
iteration regresses freshly solved item factors with Adam at ``encoder_lr``; see
``benchmarks/results/hybrid-transformer.md`` for the measurements):

- pre-norm layers (LayerNorm before attention and before the feed-forward block) and a final
  LayerNorm: gradients reach the word vectors unscaled, so the first iterations' large targets do not
  blow up the residual stream, as they did with PyTorch's default post-norm layer;
- learned positions that start small (std 0.02): the default ``N(0, 1)`` start drowned each word in
  the noise of a position most documents never reach;
- attention pooling (a learned query over the real positions) instead of a plain mean, so a few
  telling words can carry a long plot; ``pooling: mean`` keeps the masked mean;
- dropout on the pooled vector as well as inside the layers, and a linear warm-up of the encoder's
  learning rate (``warmup_steps``, read by the hybrid unless ``encoder_warmup`` says otherwise).
"""

from __future__ import annotations

from typing import Literal

import torch

from deepmovie.models.hybrid.encoders.base import ENCODERS, WordEmbedding, masked_mean

POSITION_STD = 0.02


class AttentionPooling(torch.nn.Module):
    """``sum_t softmax_t(q . x_t / sqrt(d)) x_t`` over the real positions; an empty document gives 0."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.query = torch.nn.Parameter(torch.zeros(dim))  # starts as the masked mean

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = (states @ self.query) / states.shape[-1] ** 0.5
        weights = torch.softmax(scores.masked_fill(~mask, -torch.inf), dim=1)
        weights = torch.nan_to_num(weights) * mask  # rows with no real position: all zero
        return (weights[..., None] * states).sum(1)


@ENCODERS.register("transformer")
class TransformerEncoder(torch.nn.Module):
    warmup_steps = 100  # optimizer steps of linear learning-rate warm-up the hybrid gives this encoder

    def __init__(
        self,
        vocab_size: int,
        out_dim: int,
        embed_dim: int = 64,
        heads: int = 4,
        layers: int = 2,
        max_length: int = 300,
        dropout: float = 0.1,
        pooling: Literal["attention", "mean"] = "attention",
    ) -> None:
        super().__init__()
        if pooling not in ("attention", "mean"):
            raise ValueError(f"pooling must be 'attention' or 'mean', not {pooling!r}")
        self.embed = WordEmbedding(vocab_size, embed_dim)
        self.position = torch.nn.Embedding(max_length, embed_dim)
        torch.nn.init.normal_(self.position.weight, std=POSITION_STD)
        layer = torch.nn.TransformerEncoderLayer(
            embed_dim,
            heads,
            dim_feedforward=4 * embed_dim,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = torch.nn.TransformerEncoder(
            layer, layers, norm=torch.nn.LayerNorm(embed_dim), enable_nested_tensor=False
        )
        self.pool = AttentionPooling(embed_dim) if pooling == "attention" else None
        self.head = torch.nn.Sequential(torch.nn.Dropout(dropout), torch.nn.Linear(embed_dim, out_dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = tokens != 0
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.embed(tokens) + self.position(positions)
        attend = mask.clone()
        attend[:, 0] = True  # an empty document still attends somewhere (its pooled vector stays 0)
        states = self.encoder(x, src_key_padding_mask=~attend)
        pooled = self.pool(states, mask) if self.pool is not None else masked_mean(states, mask)
        return self.head(pooled)
