"""DeepRec (Kuchaiev & Ginsburg, 2017): a deep autoencoder over user rows, trained with dense re-feeding.

AutoRec made deep: several SELU layers on each side, heavy dropout on the code (the regularizer that
lets the model grow), an optional tied decoder (each decoder layer reuses the transposed weight of its
mirror encoder layer), and dense re-feeding: after the ordinary step on the observed entries, the
dense reconstruction ``y = f(x)`` is fed back as an input whose every entry is a target, since an
ideal autoencoder has ``f(y) = y``.
"""

from __future__ import annotations

import itertools
from typing import Annotated, Literal

import torch
from pydantic import Field

from deepmovie.models.autoencoders.autorec import AutoRec, AutoRecParams
from deepmovie.models.layers import ACTIVATIONS, Activation
from deepmovie.models.registry import MODELS


class DeepRecParams(AutoRecParams):
    """Chosen on the validation rows of ML-100K u1 (never on u1.test) among sizes {[64, 64], [128, 128],
    [256, 256, 512]}, code dropout {0.5, 0.65, 0.8}, user or item rows, tied or not, re-feeding or not,
    lr {1e-3, 3e-3}: the paper's Netflix-sized network overfits MovieLens-100K."""

    epochs: int = Field(200, ge=1)
    patience: int = Field(10, ge=0)
    batch_size: int = Field(128, ge=1, description="rows (users or items) per step")
    based: Literal["item", "user"] = Field("user", description="user: encode users (the paper)")
    hidden: list[Annotated[int, Field(ge=1)]] = Field(  # type: ignore[assignment]
        default_factory=lambda: [128, 128], description="encoder sizes; the last one is the code"
    )
    encoder: Activation = Field("selu", description="activation of every hidden layer")
    decoder: Activation = Field("identity", description="activation of the output layer")
    code_dropout: float = Field(0.5, ge=0, lt=1, description="dropout on the code")
    tied: bool = Field(False, description="decoder layers reuse the transposed encoder weights")
    refeed: int = Field(1, ge=0, description="dense re-feeding steps after each ordinary step")
    reg: float = Field(
        0.0, ge=0, description="lambda of (lambda / 2) |W|^2 (dropout is the main regularizer)"
    )


class TiedLinear(torch.nn.Module):
    """``x @ W + b`` with the weight ``W`` of a mirror ``Linear`` (its transpose map), own bias."""

    def __init__(self, mirror: torch.nn.Linear) -> None:
        super().__init__()
        self.mirror = [mirror]  # a list: not registered twice as a submodule
        self.bias = torch.nn.Parameter(torch.zeros(mirror.in_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.mirror[0].weight + self.bias


@MODELS.register("deeprec")
class DeepRec(AutoRec):
    """``f(decoder(dropout(encoder(r))))`` with SELU layers, code dropout and dense re-feeding."""

    Params = DeepRecParams
    params: DeepRecParams

    def build(self, params: DeepRecParams) -> None:  # type: ignore[override]
        super().build(params.model_copy(update={"hidden": params.hidden[0]}))
        act = ACTIVATIONS[params.encoder]
        encoders = [torch.nn.Linear(a, b) for a, b in itertools.pairwise(params.hidden)]
        decoders = [
            TiedLinear(e) if params.tied else torch.nn.Linear(e.out_features, e.in_features) for e in encoders
        ]
        layers: list[torch.nn.Module] = []
        for layer in encoders:
            layers += [layer, act()]
        layers.append(torch.nn.Dropout(params.code_dropout))
        for layer in reversed(decoders):
            layers += [layer, act()]
        self.middle = torch.nn.Sequential(*layers)
        if params.tied:  # the output layer is the input layer's transpose (both stored n x width)
            self.decoder_weight = self.encoder_weight

    def weights(self) -> list[torch.Tensor]:
        unique = {id(w): w for w in super().weights()}  # a tied weight is penalised once
        return list(unique.values())

    def train_batch(self, rows: torch.Tensor) -> torch.Tensor:
        squared = super().train_batch(rows)
        observed = self._rows.count(rows) if self.params.refeed else 0
        for _ in range(self.params.refeed):
            with torch.no_grad():
                target = self.reconstruct_rows(rows)
            error = self.reconstruct(target) - target
            # The paper averages each step's loss over its targets; ours are sums, so the re-fed step
            # (every entry a target) is rescaled to weigh as much as the step on the observed entries.
            self.step((error * error).sum() * (observed / error.numel()), len(rows))
        return squared
