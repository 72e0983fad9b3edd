"""ConvMF's text CNN: word vectors, 1-D convolutions of several widths, max-pool over time, projection."""

from __future__ import annotations

import torch

from deepmovie.models.hybrid.encoders.base import ENCODERS, WordEmbedding, masked_max


class ConvFeatures(torch.nn.Module):
    """Word vectors -> one max-pooled feature per filter and window width (the CNN part, no head)."""

    def __init__(self, vocab_size: int, embed_dim: int, windows: tuple[int, ...], filters: int) -> None:
        super().__init__()
        self.embed = WordEmbedding(vocab_size, embed_dim)
        self.convs = torch.nn.ModuleList(
            torch.nn.Conv1d(embed_dim, filters, w, padding=w - 1) for w in windows
        )
        self.out_features = filters * len(windows)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = tokens != 0
        x = self.embed(tokens).transpose(1, 2)  # (batch, embed, length)
        return torch.cat(
            [masked_max(torch.relu(conv(x)), _window_mask(mask, conv)) for conv in self.convs], 1
        )


def _window_mask(mask: torch.Tensor, conv: torch.nn.Conv1d) -> torch.Tensor:
    """Which outputs of ``conv`` see at least one real word (the others only see padding)."""
    ones = torch.ones(1, 1, conv.kernel_size[0], device=mask.device)
    return torch.nn.functional.conv1d(mask[:, None].float(), ones, padding=conv.padding[0])[:, 0] > 0


@ENCODERS.register("cnn")
class CNNEncoder(torch.nn.Module):
    """Conv features -> ``tanh`` hidden layer -> dropout -> linear projection to the latent space."""

    def __init__(
        self,
        vocab_size: int,
        out_dim: int,
        embed_dim: int = 128,
        windows: tuple[int, ...] = (3, 4, 5),
        filters: int = 64,
        hidden: int = 128,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.features = ConvFeatures(vocab_size, embed_dim, tuple(windows), filters)
        self.head = torch.nn.Sequential(
            torch.nn.Linear(self.features.out_features, hidden),
            torch.nn.Tanh(),
            torch.nn.Dropout(dropout),
            torch.nn.Linear(hidden, out_dim),
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(tokens))
