"""Building blocks shared by the neural model families."""

from __future__ import annotations

from typing import Literal

import torch

Activation = Literal["identity", "sigmoid", "relu", "selu", "tanh", "gelu"]
ACTIVATIONS: dict[str, type[torch.nn.Module]] = {
    "identity": torch.nn.Identity,
    "sigmoid": torch.nn.Sigmoid,
    "relu": torch.nn.ReLU,
    "selu": torch.nn.SELU,
    "tanh": torch.nn.Tanh,
    "gelu": torch.nn.GELU,
}


class Biases(torch.nn.Module):
    """Per-user and per-item rating offsets ``b_u + b_i``, zero at the start.

    Most of a rating's variance is who rates and what is rated; explicit offsets leave the
    interaction part (a dot product, an MLP) to model only the rest.
    """

    def __init__(self, n_users: int, n_items: int, sparse: bool) -> None:
        super().__init__()
        self.user = torch.nn.Embedding(n_users, 1, sparse=sparse)
        self.item = torch.nn.Embedding(n_items, 1, sparse=sparse)
        torch.nn.init.zeros_(self.user.weight)
        torch.nn.init.zeros_(self.item.weight)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(``b_u + b_i``, the squared norm of the touched rows, for L2)."""
        user, item = self.user(users)[:, 0], self.item(items)[:, 0]
        return user + item, (user * user).sum() + (item * item).sum()
