"""Building blocks shared by the neural model families."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """Run a block with dropout and batch norm in inference mode, then restore the previous mode."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def mlp(
    width: int, sizes: list[int], activation: Activation, dropout: float = 0.0, batch_norm: bool = False
) -> tuple[torch.nn.Sequential, int]:
    """Linear (+ batch norm before the activation) + activation (+ dropout) per size.

    Returns the stack and its output width (``width`` itself when ``sizes`` is empty)."""
    layers: list[torch.nn.Module] = []
    for size in sizes:
        layers.append(torch.nn.Linear(width, size))
        if batch_norm:
            layers.append(torch.nn.BatchNorm1d(size))
        layers.append(ACTIVATIONS[activation]())
        if dropout:
            layers.append(torch.nn.Dropout(dropout))
        width = size
    return torch.nn.Sequential(*layers), width


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


def embedding(count: int, dim: int, std: float, sparse: bool) -> torch.nn.Embedding:
    """An embedding table initialised N(0, std^2)."""
    table = torch.nn.Embedding(count, dim, sparse=sparse)
    torch.nn.init.normal_(table.weight, std=std)
    return table
