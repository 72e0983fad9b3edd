"""Mult-VAE and Mult-DAE (Liang, Krishnan, Hoffman, Jebara, WWW 2018, "Variational Autoencoders for
Collaborative Filtering"): autoencoders over users' interaction rows with a multinomial likelihood.

A user's binarized row is L2-normalised, dropped out (the denoising noise), encoded by a tanh MLP
``[n_items -> hidden -> latent]`` and decoded symmetrically into logits over every item; the loss is the
multinomial log-likelihood ``sum_i x_i log softmax(f(z))_i``, which, unlike a per-item Gaussian or
logistic loss, makes items compete for the user's probability mass: what top-N ranking rewards.
Mult-VAE's encoder gives a Gaussian ``(mu, log sigma^2)`` and adds ``beta KL(q(z|x) || N(0, I))`` with
``beta = min(anneal_cap, step / total_anneal_steps)``; Mult-DAE has a deterministic code and an L2
penalty on the weights. The objective per batch is the mean over its users, as in the authors' code.

Scores are always the deterministic pass (no dropout, ``z = mu``) over the attached histories, so a
new user is folded in by the same pass over their row (the paper's strong generalization).
"""

from __future__ import annotations

import contextlib
from typing import ClassVar

import numpy as np
import torch
from pydantic import Field

from deepmovie.data.interactions import Interactions
from deepmovie.engine import distributed
from deepmovie.errors import DeepMovieError
from deepmovie.models.autoencoders.rows import SparseRows
from deepmovie.models.base import DataInfo
from deepmovie.models.factors import to_numpy
from deepmovie.models.minibatch import MiniBatchModel, MiniBatchParams
from deepmovie.models.ranking.base import RankingModel
from deepmovie.models.registry import MODELS

FLOAT_BYTES = 4
BATCH_COPIES = 5  # batch x n_items arrays alive in a training step: logits, log p and their gradients


class MultParams(MiniBatchParams):
    """The paper's settings (section 4.3): tanh MLP 600-200, input dropout 0.5, Adam 1e-3, 500 users."""

    epochs: int = Field(100, ge=1, description="maximum passes over the users")
    patience: int = Field(10, ge=0, description="stop after this many epochs without a better valid NDCG")
    batch_size: int = Field(500, ge=1, description="users (rows) per step")
    lr: float = Field(1e-3, gt=0, description="learning rate (Adam by default)")
    hidden: int = Field(600, ge=1, description="width of the encoder's and the decoder's hidden layer")
    latent: int = Field(200, ge=1, description="size of the user code z")
    dropout: float = Field(0.5, ge=0, lt=1, description="dropout rate of the L2-normalised input row")
    reg: float = Field(0.0, ge=0, description="lambda of lambda |W|^2 over the weight matrices (not biases)")
    positive_rating: float = Field(
        0.0, description="ratings at or above this count as interactions (0: every rating)"
    )


class MultVAEParams(MultParams):
    anneal_cap: float = Field(0.2, ge=0, description="the largest KL weight beta")
    total_anneal_steps: int = Field(
        200_000, ge=0, description="optimizer steps over which beta grows linearly to 1 (0: beta = cap)"
    )


class MultDAEParams(MultParams):
    reg: float = Field(
        0.01, ge=0, description="lambda of lambda |W|^2 over the weight matrices (paper: 0.01)"
    )


class MultAutoencoder(MiniBatchModel, RankingModel):
    """What Mult-VAE and Mult-DAE share: rows, the decoder, the multinomial loss, training and scoring.

    The input rows are sparse, so the first layer is a weighted ``embedding_bag`` over each row's items
    (the L2-normalised, dropped-out entries as weights): O(entries x hidden) instead of the dense
    O(rows x n_items x hidden) product, and the likelihood gathers ``log p`` at the same entries.
    """

    Params = MultParams
    params: MultParams
    fused_adam = True
    variational: ClassVar[bool] = False

    def __init__(self, params: MultParams, info: DataInfo) -> None:
        super().__init__(params, info)
        n, hidden, latent = info.n_items, params.hidden, params.latent
        code_width = 2 * latent if self.variational else latent
        count = n * hidden + hidden * code_width + latent * hidden + hidden * n + 2 * hidden + code_width + n
        self.require_memory(count * FLOAT_BYTES, f"the weights of {n:,} items")
        # The first layer, stored item by item (n_items x hidden) for embedding_bag.
        self.input_weight = torch.nn.Parameter(torch.empty(n, hidden))
        self.input_bias = torch.nn.Parameter(torch.empty(hidden))
        encoder: list[torch.nn.Module] = [torch.nn.Tanh(), torch.nn.Linear(hidden, code_width)]
        if not self.variational:
            encoder.append(torch.nn.Tanh())
        self.encoder = torch.nn.Sequential(*encoder)
        self.decoder = torch.nn.Sequential(
            torch.nn.Linear(latent, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, n)
        )
        # The authors' initialisation: Glorot-uniform weights, biases N(0, 0.001^2).
        for weight in self.weights():
            torch.nn.init.xavier_uniform_(weight)
        for bias in [self.input_bias, *(layer.bias for layer in self.linear_layers())]:
            torch.nn.init.normal_(bias, std=0.001)
        self._rows: SparseRows | None = None

    def linear_layers(self) -> list[torch.nn.Linear]:
        return [m for m in self.modules() if isinstance(m, torch.nn.Linear)]

    def weights(self) -> list[torch.Tensor]:
        """The weight matrices (the L2 term's; biases are not penalised)."""
        return [self.input_weight, *(layer.weight for layer in self.linear_layers())]

    # --- the maths ------------------------------------------------------------------------------

    def first_layer(
        self, local: torch.Tensor, cols: torch.Tensor, n_rows: int, dropout: bool
    ) -> torch.Tensor:
        """``W1 dropout(x / |x|) + b1`` for 0/1 rows given by their entries (``local``: row, ascending).

        A row of ``c`` items has the value ``1 / sqrt(c)`` at each of them: its L2 normalisation."""
        counts = torch.bincount(local, minlength=n_rows)
        values = counts.clamp_min(1).float().rsqrt()[local]
        values = torch.nn.functional.dropout(values, self.params.dropout, training=dropout)
        offsets = torch.cumsum(counts, 0) - counts
        summed = torch.nn.functional.embedding_bag(
            cols, self.input_weight, offsets, mode="sum", per_sample_weights=values
        )
        return summed + self.input_bias

    def code(self, hidden: torch.Tensor) -> torch.Tensor:
        """The deterministic code from the first layer's output: Mult-DAE's code, Mult-VAE's mean."""
        return self.encoder(hidden)

    def sample(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the training code from the first layer's output, the sum of the KL terms): none for the DAE."""
        return self.encoder(hidden), hidden.new_zeros(())

    def batch_loss(  # type: ignore[override]
        self, local: torch.Tensor, cols: torch.Tensor, n_rows: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(summed multinomial negative log-likelihood, summed KL) of the 0/1 rows with these entries,
        with the noise of training: input dropout (and, for the VAE, a sampled code)."""
        z, kl = self.sample(self.first_layer(local, cols, n_rows, dropout=True))
        log_p = torch.log_softmax(self.decoder(z).float(), dim=-1)
        return -log_p[local, cols].sum(), kl.float()

    def penalty(self) -> torch.Tensor | None:
        """``reg |W|^2`` over the weight matrices (the authors' Mult-DAE regulariser); None when off."""
        if not self.params.reg:
            return None
        return self.params.reg * sum((weight * weight).sum() for weight in self.weights())

    def beta(self) -> float:
        """The KL weight of the next step (none for the DAE)."""
        return 0.0

    def advance(self) -> None:
        """Count one optimizer step (the VAE's annealing schedule)."""

    @torch.no_grad()
    def scores(self, local: torch.Tensor, cols: torch.Tensor, n_rows: int) -> torch.Tensor:
        """Log-probabilities of every item for the 0/1 rows with these entries: no dropout and no
        sampling, so a row always scores the same, in training mode or not."""
        logits = self.decoder(self.code(self.first_layer(local, cols, n_rows, dropout=False)))
        return torch.log_softmax(logits.float(), dim=-1)

    # --- rows -----------------------------------------------------------------------------------

    def attach(self, seen: Interactions) -> None:
        """The interaction rows that scores encode: those of ``seen``."""
        super().attach(seen)
        self._rows = SparseRows(self.history, self.device)

    def row_entries(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(position in ``users``, item) of the attached interactions of ``users``, on the device."""
        if self._rows is None:
            raise DeepMovieError(f"{self.name}: scores read the users' rows; call prepare or attach first")
        self._rows.device = self.device  # the model may have moved since attach
        local, cols, _ = self._rows.entries(users)
        return local, cols

    def score_items(self, users: torch.Tensor) -> torch.Tensor:
        return self.scores(*self.row_entries(users), len(users))

    def fold_in(self, items: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        """A new user's row goes through the same pass as a known user's (strong generalization)."""
        local, cols = self.given_row(items, ratings).nonzero(as_tuple=True)
        return to_numpy(self.scores(local, cols, 1)[0])

    # --- training -------------------------------------------------------------------------------

    def prepare(self, train: Interactions, seed: int) -> None:
        self.attach(train)
        counts = np.diff(self._rows.matrix.indptr)
        self._active = torch.as_tensor(np.flatnonzero(counts > 0))  # users with a row to reconstruct
        p = self.params
        trainable = sum(t.numel() for t in self.parameters())
        batch = min(p.batch_size, len(self._active))
        need = FLOAT_BYTES * (3 * trainable + BATCH_COPIES * batch * self.info.n_items)
        self.require_memory(
            need,
            f"training on {self.info.n_items:,} items (gradients, Adam state and a batch of {batch} rows)",
        )
        self.start_optimization(seed)
        self._loss = torch.compile(self.batch_loss) if p.compile else self.batch_loss

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """A seeded permutation of the users with interactions (on the host, where rows are sliced)."""
        return self._active[torch.randperm(len(self._active), generator=self.epoch_generator(epoch))]

    def train_epoch(self, epoch: int) -> float:
        if self._rows is None:
            raise DeepMovieError(f"{self.name}: call prepare(train, seed) before training")
        order = self.epoch_order(epoch)
        size = self.params.batch_size
        total = torch.zeros((), device=self.device, dtype=torch.float64)
        for start in range(0, len(order), size):
            batch = order[start : start + size]
            total += self.train_batch(distributed.shard(batch), len(batch))
        self.optimization.end_epoch()
        return float(distributed.all_reduce_sum(total)) / max(len(order), 1)

    def train_batch(self, users: torch.Tensor, batch_rows: int) -> torch.Tensor:
        """One step on this rank's ``users`` of a global batch of ``batch_rows``: the batch's mean of
        ``-log-likelihood + beta KL``, plus the penalty; returns the summed annealed loss."""
        p = self.params
        beta = self.beta()
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if p.amp and self.device.type == "cuda"
            else contextlib.nullcontext()
        )
        self.optimization.zero_grad()
        with autocast:
            nll, kl = self._loss(*self.row_entries(users), len(users))
        loss = nll + beta * kl
        objective = loss / batch_rows
        penalty = self.penalty()
        if penalty is not None:  # each rank adds its share, so the all-reduced gradient has it once
            objective = objective + penalty * (len(users) / batch_rows)
        objective.backward()
        self.optimization.step()
        self.advance()
        return loss.detach()


@MODELS.register("multvae")
class MultVAE(MultAutoencoder):
    """Mult-VAE^PR: a Gaussian code, multinomial decoder and a KL term annealed up to ``anneal_cap``."""

    Params = MultVAEParams
    params: MultVAEParams
    variational = True

    def __init__(self, params: MultVAEParams, info: DataInfo) -> None:
        super().__init__(params, info)
        # Steps taken so far, saved with the weights so a resumed run continues the schedule.
        self.register_buffer("anneal_step", torch.zeros((), dtype=torch.long))

    def code(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.encoder(hidden)[:, : self.params.latent]

    def sample(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(hidden).chunk(2, dim=-1)
        std = torch.exp(0.5 * logvar)
        z = mu + torch.randn_like(std) * std
        kl = 0.5 * (-logvar + logvar.exp() + mu * mu - 1.0).sum()
        return z, kl

    def beta(self) -> float:
        p = self.params
        if p.total_anneal_steps == 0:
            return p.anneal_cap
        return min(p.anneal_cap, int(self.anneal_step) / p.total_anneal_steps)

    def advance(self) -> None:
        self.anneal_step += 1


@MODELS.register("multdae")
class MultDAE(MultAutoencoder):
    """Mult-DAE: a deterministic tanh code, multinomial decoder and L2 on the weights."""

    Params = MultDAEParams
    params: MultDAEParams
    variational = False
