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
