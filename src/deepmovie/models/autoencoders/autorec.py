"""AutoRec (Sedhain et al., WWW 2015): an autoencoder over the rows of the rating matrix.

I-AutoRec (the default, ``based: item``) encodes each item as the vector of its ratings by all users;
U-AutoRec (``based: user``) encodes each user as the vector of their ratings of all items. The
reconstruction is ``f(V g(W r + b) + c)`` and the objective is the squared error on the *observed*
entries only, plus ``(reg / 2) (|W|^2 + |V|^2)``; unobserved inputs are zeros, as in the paper. A
predicted rating is the reconstructed entry of the training row: item ``i``'s row, user ``u``'s entry.

Rows are batched straight from the training CSR (a dense ``batch x n`` block per step, never the whole
matrix), one seeded permutation of the rows per epoch, so resumed runs replay the same order.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field

from deepmovie.data.interactions import Interactions, RatingScale
from deepmovie.engine import distributed
from deepmovie.errors import DeepMovieError
from deepmovie.models.autoencoders.rows import SparseRows, SparseTimesDense
from deepmovie.models.base import DataInfo, FoldInUnsupported
from deepmovie.models.factors import to_numpy
from deepmovie.models.layers import ACTIVATIONS, Activation
from deepmovie.models.minibatch import MiniBatchModel, MiniBatchParams
from deepmovie.models.registry import MODELS

PREDICT_ELEMENTS = 1 << 23  # reconstructed entries held at once by predict (memory bound)


def _uniform(*shape: int, fan_in: int) -> torch.Tensor:
    """``torch.nn.Linear``'s default initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / max(fan_in, 1) ** 0.5
    return torch.empty(*shape).uniform_(-bound, bound)


class RatingSigmoid(torch.nn.Module):
    """The sigmoid decoder, stretched onto the rating scale: ``low + (high - low) sigmoid(x)``.

    A plain sigmoid ends at 1 and could never reconstruct a 4-star rating."""

    def __init__(self, scale: RatingScale) -> None:
        super().__init__()
        self.low, self.span = float(scale.low), float(scale.high - scale.low)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.low + self.span * torch.sigmoid(x)


class AutoRecParams(MiniBatchParams):
    """Defaults chosen on the validation rows of ML-100K fold u1 (never on u1.test)."""

    epochs: int = Field(300, ge=1)
    patience: int = Field(15, ge=0)
    batch_size: int = Field(256, ge=1, description="rows (items or users) per step")
    lr: float = Field(1e-3, gt=0)
    hidden: int = Field(500, ge=1, description="size of the code")
    based: Literal["item", "user"] = Field("item", description="item: I-AutoRec; user: U-AutoRec")
    encoder: Activation = Field("sigmoid", description="g, the encoder activation")
    decoder: Activation = Field(
        "identity", description="f, the decoder activation (sigmoid: onto the rating scale)"
    )
    reg: float = Field(100.0, ge=0, description="lambda of (lambda / 2) (|W|^2 + |V|^2)")


@MODELS.register("autorec")
class AutoRec(MiniBatchModel):
    """``f(V g(W r + b) + c)`` over item rows (I-AutoRec) or user rows (U-AutoRec)."""

    Params = AutoRecParams
    params: AutoRecParams
    fused_adam = True

    def __init__(self, params: AutoRecParams, info: DataInfo) -> None:
        super().__init__(params, info)
        item_based = params.based == "item"
        self.n_rows = info.n_items if item_based else info.n_users
        self.n_cols = info.n_users if item_based else info.n_items
        self.build(params)
        self._rows: SparseRows | None = None

    def build(self, params: AutoRecParams) -> None:
        """The layers: a sparse-capable first layer, ``middle`` (empty here) and a gatherable last one.

        The first and last weights are stored ``n_cols x width`` so a batch touches them by row:
        training encodes with ``embedding_bag`` over the observed entries and decodes only the
        observed outputs, O(observed x hidden) instead of O(batch x n x hidden) for dense blocks.
        """
        self.encoder_weight = torch.nn.Parameter(_uniform(self.n_cols, params.hidden, fan_in=self.n_cols))
        self.encoder_bias = torch.nn.Parameter(_uniform(params.hidden, fan_in=self.n_cols))
        self.g = ACTIVATIONS[params.encoder]()
        self.middle = torch.nn.Sequential()
        self.decoder_weight = torch.nn.Parameter(_uniform(self.n_cols, params.hidden, fan_in=params.hidden))
        self.decoder_bias = torch.nn.Parameter(_uniform(self.n_cols, fan_in=params.hidden))
        self.f = (
            RatingSigmoid(self.info.scale) if params.decoder == "sigmoid" else ACTIVATIONS[params.decoder]()
        )

    def reconstruct(self, block: torch.Tensor) -> torch.Tensor:
        """Dense rows (zeros where unobserved) -> their dense reconstruction (the reference form)."""
        code = self.middle(self.g(block @ self.encoder_weight + self.encoder_bias))
        return self.f(code @ self.decoder_weight.T + self.decoder_bias)

    def reconstruct_observed(
        self, a: torch.Tensor, a_t: torch.Tensor, local: torch.Tensor, cols: torch.Tensor
    ) -> torch.Tensor:
        """The reconstruction at the observed entries of a sparse block ``a`` (``a_t``: its transpose).

        The same arithmetic as :meth:`reconstruct` without the dense input block: the encoder is a
        sparse product, and only the observed outputs enter the loss.
        """
        summed = SparseTimesDense.apply(self.encoder_weight, a, a_t)
        code = self.middle(self.g(summed + self.encoder_bias))
        return self.f(code @ self.decoder_weight.T + self.decoder_bias)[local, cols]

    def weights(self) -> list[torch.Tensor]:
        """The weight matrices the L2 term penalises (biases are not)."""
        middle = [m.weight for m in self.middle.modules() if isinstance(m, torch.nn.Linear)]
        return [self.encoder_weight, self.decoder_weight, *middle]

    def penalty(self) -> torch.Tensor:
        """``(reg / 2)`` times the squared norm of every weight matrix."""
        return 0.5 * self.params.reg * sum((w * w).sum() for w in self.weights())

    def row_matrix(self, train: Interactions) -> sp.csr_matrix:
        """The training ratings with one row per encoded vector (items for I-AutoRec)."""
        by_user = train.csr()
        return sp.csr_matrix(by_user.T) if self.params.based == "item" else sp.csr_matrix(by_user)

    def prepare(self, train: Interactions, seed: int) -> None:
        self.attach(train)
        self.start_optimization(seed)

    def attach(self, seen: Interactions) -> None:
        """Predictions are reconstructions of rating rows: they read the rows of ``seen``."""
        self._rows = SparseRows(self.row_matrix(seen), self.device)

    def fold_in(self, items: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        """U-AutoRec encodes a user's rating row: a new user's row is just another input."""
        if self.params.based != "user":
            raise FoldInUnsupported(
                f"cold start is not supported for item-based {self.name}: it encodes items by the users "
                "who rated them, and a new user is an input column the network has no weights for "
                "(U-AutoRec, `--set based=user`, supports it)"
            )
        row = torch.zeros(1, self.info.n_items, device=self.device)
        row[0, torch.as_tensor(items, device=self.device)] = torch.as_tensor(
            ratings, dtype=torch.float32, device=self.device
        )
        with torch.no_grad():
            return to_numpy(self.reconstruct(row)[0])

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """A seeded permutation of the encoded rows (items for I-AutoRec)."""
        return torch.randperm(self.n_rows, generator=self.epoch_generator(epoch)).to(self.device)

    def batch_loss(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        """(objective, squared error) of a batch of rows: the reference form of a training step.

        The L2 term is scaled by the batch's share of the rows, so an epoch's objectives add up to the
        paper's full objective. :meth:`train_epoch` adds that term's gradient in place instead.
        """
        squared = self.batch_error(rows)
        return squared + self.penalty() * (len(rows) / self.n_rows), squared

    def batch_error(self, rows: torch.Tensor) -> torch.Tensor:
        """Squared error of the reconstruction on the observed entries of ``rows``."""
        a, a_t, (local, cols, values) = self._rows.sparse(rows)
        error = self.reconstruct_observed(a, a_t, local, cols) - values
        return (error * error).sum()

    def train_epoch(self, epoch: int) -> float:
        if self._rows is None:
            raise DeepMovieError(f"{self.name}: call prepare(train, seed) before training")
        order = self.epoch_order(epoch)
        total = torch.zeros((), device=self.device, dtype=torch.float64)
        for start in range(0, len(order), self.params.batch_size):
            total += self.train_batch(distributed.shard(order[start : start + self.params.batch_size]))
        self.optimization.end_epoch()
        return float(distributed.all_reduce_sum(total)) / max(self._rows.nnz, 1)

    def train_batch(self, rows: torch.Tensor) -> torch.Tensor:
        """One optimizer step on a batch of rows; returns the loss that the epoch's mean reports."""
        squared = self.batch_error(rows)
        self.step(squared, len(rows))
        return squared.detach()

    def step(self, loss: torch.Tensor, batch_rows: int) -> None:
        """Backpropagate ``loss`` plus this batch's share of the L2 term, then step the optimizers."""
        self.optimization.zero_grad()
        loss.backward()
        decay = self.params.reg * batch_rows / self.n_rows  # d/dw of the scaled (reg / 2) |w|^2
        if decay:
            with torch.no_grad():
                for weight in self.weights():
                    weight.grad.add_(weight, alpha=decay)
        self.optimization.step()

    def reconstruct_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """The dense reconstruction of training rows (by row index): what predictions read."""
        return self.reconstruct(self._rows.dense(rows))

    def score_items(self, users: torch.Tensor) -> torch.Tensor:
        if self.params.based == "user":  # a user's reconstructed row scores every item at once
            self._require_rows()
            return self.reconstruct_rows(users)
        return super().score_items(users)

    def _require_rows(self) -> None:
        if self._rows is None:
            raise DeepMovieError(f"{self.name}: predict needs the training ratings; call prepare first")

    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Entry ``[u]`` of item ``i``'s reconstructed training row (I-AutoRec; transposed for U-)."""
        self._require_rows()
        rows, cols = (items, users) if self.params.based == "item" else (users, items)
        rows, cols = rows.long(), cols.long()
        out = torch.empty(len(rows), device=rows.device)
        if len(rows) == 0:
            return out
        distinct, inverse = torch.unique(rows, return_inverse=True)
        order = torch.argsort(inverse)
        sorted_inverse = inverse[order]
        chunk = max(1, PREDICT_ELEMENTS // max(self.n_cols, 1))
        for start in range(0, len(distinct), chunk):
            stop = min(start + chunk, len(distinct))
            recon = self.reconstruct_rows(distinct[start:stop])
            bounds = torch.searchsorted(sorted_inverse, torch.tensor([start, stop], device=rows.device))
            pairs = order[int(bounds[0]) : int(bounds[1])]
            out[pairs] = recon[inverse[pairs] - start, cols[pairs]]
        return out
