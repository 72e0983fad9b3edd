"""A bidirectional LSTM over the words, mean-pooled over the real positions."""

from __future__ import annotations

import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from deepmovie.models.hybrid.encoders.base import ENCODERS, WordEmbedding, masked_mean


@ENCODERS.register("lstm")
class LSTMEncoder(torch.nn.Module):
    def __init__(
        self,
        vocab_size: int,
        out_dim: int,
        embed_dim: int = 128,
        hidden: int = 64,
        layers: int = 1,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.embed = WordEmbedding(vocab_size, embed_dim)
        self.lstm = torch.nn.LSTM(embed_dim, hidden, num_layers=layers, batch_first=True, bidirectional=True)
        self.head = torch.nn.Sequential(torch.nn.Dropout(dropout), torch.nn.Linear(2 * hidden, out_dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = tokens != 0
        lengths = mask.sum(1).clamp(min=1).cpu()  # packed: the backward pass starts at the last real word
        packed = pack_padded_sequence(self.embed(tokens), lengths, batch_first=True, enforce_sorted=False)
        states, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=tokens.shape[1])
        return self.head(masked_mean(states, mask))
