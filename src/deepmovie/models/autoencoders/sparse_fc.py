"""Sparse FC, kernelNet's autoencoder (Muller et al., ICML 2018, "Kernelized Synaptic Weight Matrices").

I-AutoRec with kernelized layers (:mod:`deepmovie.models.autoencoders.kernel`): each item's row of
ratings by all users goes through sigmoid kernel layers and an identity kernel output layer, trained
on the squared error of the observed entries plus the weight and kernel penalties. As in the
reference (github.com/lorenzMuller/kernelNet_MovieLens: items as rows, ``transpose=True``), training
is full-batch L-BFGS on the dense items x users matrix, zeros where unobserved; one epoch is a fresh
run of ``lbfgs_iters`` iterations, so the trainer's validation, patience and checkpoints still drive
it. A predicted rating is the reconstructed entry (item row, user column); the evaluator clips it to
the rating scale, as the reference does.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field

from deepmovie.data.interactions import Interactions
from deepmovie.errors import DeepMovieError
from deepmovie.models.autoencoders.kernel import KernelNet, lbfgs_epoch
from deepmovie.models.base import VALUE_BYTES, DataInfo, FoldInUnsupported, Model, ModelParams
from deepmovie.models.registry import MODELS

# Vectors of the weights' size that training holds besides the 2 x history of L-BFGS: the weights,
# their gradient, L-BFGS's flat gradient, previous gradient, direction and line-search start, and
# each layer's kernel, effective weight and their gradients.
TRAIN_WEIGHT_COPIES = 12
MEMORY_HINT = "; lower hidden or lbfgs_history, or use autorec (mini-batches of rows)"


class SparseFCParams(ModelParams):
    """Defaults: the references' network (2 hidden layers of 500, kernel vectors of 5 dimensions,
    L-BFGS memory 10) with the ML-100K penalties of GLocal-K's local-kernel autoencoder, which is this
    network (github.com/usydnlp/Glocal_K: ``lambda_2 = 20``, ``lambda_s = 0.006``, 5 iterations per
    epoch). kernelNet's own script is for ML-1M: ``lambda_2 = 60``, ``lambda_s = 0.013``, 50 iterations
    per epoch for 20 epochs (``--set lambda_2=60 --set lambda_s=0.013 --set lbfgs_iters=50``)."""

    epochs: int = Field(200, ge=1, description="maximum epochs of lbfgs_iters L-BFGS iterations each")
    patience: int = Field(10, ge=0)
    hidden: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: [500, 500], description="sizes of the sigmoid kernel layers"
    )
    kernel_dim: int = Field(5, ge=1, description="dimensions of the vectors u, v the kernel compares")
    lambda_2: float = Field(20.0, ge=0, description="lambda_2 of (lambda_2 / 2) |W|^2 per layer")
    lambda_s: float = Field(0.006, ge=0, description="lambda_s of (lambda_s / 2) |K|^2 per layer")
    lbfgs_iters: int = Field(5, ge=1, description="L-BFGS iterations per epoch (a fresh run each epoch)")
    lbfgs_history: int = Field(10, ge=1, description="L-BFGS memory (scipy's maxcor)")


@MODELS.register("sparse-fc")
class SparseFC(Model):
    """Kernel layers ``n_users -> hidden... -> n_users`` over item rows, full-batch L-BFGS."""

    Params = SparseFCParams
    params: SparseFCParams
    # Dense n_items x n_users matrices held while training and while predicting (glocal-k holds more).
    TRAIN_DENSE = 3  # the ratings, the reconstruction and its gradient
    SERVE_DENSE = 2  # the ratings and the reconstruction
    PASSES = 1  # forward passes of the network per loss evaluation

    def __init__(self, params: SparseFCParams, info: DataInfo) -> None:
        super().__init__(params, info)
        self.net = KernelNet([info.n_users, *params.hidden, info.n_users], params.kernel_dim)
        self._ratings: torch.Tensor | None = None  # the dense items x users training matrix
        self._index = self._values = torch.zeros(0)  # observed entries: flat index, rating

    @classmethod
    def check_size(
        cls,
        params: ModelParams,
        info: DataInfo,
        *,
        use: Literal["train", "serve"] = "train",
        device: torch.device | None = None,
        max_memory: int | None = None,
    ) -> None:
        """The weights (as every model), then the dense working set, sized on a meta twin."""
        super().check_size(params, info, use=use, device=device, max_memory=max_memory)
        with torch.device("meta"):
            shape = cls(params, info)
        need, what = shape.working_set(use)
        cls.refuse_over_budget(need, what, device or torch.device("cpu"), max_memory, MEMORY_HINT)

    def working_set(self, use: Literal["train", "serve"]) -> tuple[int, str]:
        """(bytes, what they hold) of training or predicting: dense matrices, activations, L-BFGS."""
        n_items, n_users = self.info.n_items, self.info.n_users
        activations = self.PASSES * n_items * self.net.activations()
        matrix = f"the dense {n_items:,} x {n_users:,} rating matrix"
        if use == "serve":
            values = self.SERVE_DENSE * n_items * n_users + activations
            return values * VALUE_BYTES, f"{matrix} and the network's activations"
        weights = sum(p.numel() for p in self.parameters())
        history = self.params.lbfgs_history
        values = (
            self.TRAIN_DENSE * n_items * n_users
            + 3 * activations  # a sigmoid's output, kept for the backward, and its gradient
            + (2 * history + TRAIN_WEIGHT_COPIES) * weights
        )
        return values * VALUE_BYTES, f"{matrix}, the activations and {history} L-BFGS steps of history"

    def prepare(self, train: Interactions, seed: int) -> None:
        self.require_memory(*self.working_set("train"), MEMORY_HINT)
        self.attach(train)

    def attach(self, seen: Interactions) -> None:
        """Predictions reconstruct the rows of ``seen``: they are held dense on the device."""
        self.require_memory(*self.working_set("serve"), MEMORY_HINT)
        by_item = sp.coo_matrix(sp.csr_matrix(seen.csr().T, dtype=np.float32))
        by_item.sum_duplicates()
        rows = torch.as_tensor(by_item.row, device=self.device).long()
        cols = torch.as_tensor(by_item.col, device=self.device).long()
        self._values = torch.as_tensor(by_item.data, device=self.device).float()
        self._index = rows * self.info.n_users + cols
        self._ratings = torch.zeros(self.info.n_items, self.info.n_users, device=self.device)
        self._ratings.view(-1)[self._index] = self._values

    def _require_ratings(self) -> torch.Tensor:
        if self._ratings is None:
            raise DeepMovieError(f"{self.name}: the model needs the training ratings; call prepare first")
        return self._ratings

    def inputs(self, kernels: list[torch.Tensor] | None = None) -> torch.Tensor:
        """What the network reconstructs from: the rating matrix itself (GLocal-K changes it)."""
        return self._require_ratings()

    def objective(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(``1/2`` squared error on the observed entries + penalties, the squared error)."""
        kernels = self.net.kernels()
        reconstruction = self.net(self.inputs(kernels), kernels)
        error = reconstruction.view(-1)[self._index] - self._values
        squared = (error * error).sum()
        return 0.5 * squared + self.net.penalty(self.params.lambda_2, self.params.lambda_s, kernels), squared

    def trainable(self) -> list[torch.nn.Parameter]:
        """The weights this epoch's L-BFGS run moves."""
        return list(self.net.parameters())

    def iterations(self) -> int:
        return self.params.lbfgs_iters

    def train_epoch(self, epoch: int) -> float:
        self._require_ratings()
        squared = lbfgs_epoch(self.trainable(), self.objective, self.iterations(), self.params.lbfgs_history)
        return squared / max(len(self._values), 1)

    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Entry ``[u]`` of item ``i``'s reconstructed row (unclipped, as the evaluator clips)."""
        users, items = users.long(), items.long()
        self._require_ratings()
        if len(items) == 0:
            return torch.empty(0, device=items.device)
        distinct, inverse = torch.unique(items, return_inverse=True)
        with torch.no_grad():
            inputs = self.inputs()
            reconstruction = self.net(inputs[distinct])
        return reconstruction[inverse, users]

    def fold_in(self, items: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        raise FoldInUnsupported(
            f"cold start is not supported for {self.name}: it encodes items by the users who rated them, "
            "and a new user is an input column the network has no weights for (U-AutoRec, `autorec "
            "--set based=user`, supports it)"
        )
