"""A 1-D residual convolutional network over the words, max-pooled over the real positions."""

from __future__ import annotations

import torch

from deepmovie.models.hybrid.encoders.base import ENCODERS, WordEmbedding, masked_max


class ResidualBlock(torch.nn.Module):
    """``relu(x + bn(conv(relu(bn(conv(x))))))``, length-preserving; padding is zeroed between the
    convolutions so a document's vector does not depend on how much padding follows it."""

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        self.first = torch.nn.Sequential(
            torch.nn.Conv1d(channels, channels, width, padding="same"),
            torch.nn.BatchNorm1d(channels),
            torch.nn.ReLU(),
        )
        self.second = torch.nn.Sequential(
            torch.nn.Conv1d(channels, channels, width, padding="same"), torch.nn.BatchNorm1d(channels)
        )

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.second(self.first(x) * keep)) * keep


@ENCODERS.register("resnet")
class ResNetEncoder(torch.nn.Module):
    def __init__(
        self,
        vocab_size: int,
        out_dim: int,
        embed_dim: int = 128,
        channels: int = 64,
        blocks: int = 2,
        width: int = 3,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.embed = WordEmbedding(vocab_size, embed_dim)
        self.stem = torch.nn.Conv1d(embed_dim, channels, 1)
        self.blocks = torch.nn.ModuleList(ResidualBlock(channels, width) for _ in range(blocks))
        self.head = torch.nn.Sequential(torch.nn.Dropout(dropout), torch.nn.Linear(channels, out_dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = tokens != 0
        keep = mask[:, None].to(self.stem.weight.dtype)
        x = self.stem(self.embed(tokens).transpose(1, 2)) * keep
        for block in self.blocks:
            x = block(x, keep)
        return self.head(masked_max(x, mask))
