"""BPR (Rendle et al., UAI 2009): matrix factorization trained to rank a user's items above the rest.

Implicit feedback has no negatives, only unobserved items; BPR learns from pairs instead of labels:
for each positive (u, i) it draws items j and maximises ``log sigmoid(x_ui - x_uj)`` with
``x_ui = p_u . q_i + b_i``, so the objective is the AUC's smooth surrogate rather than a regression
onto 0/1. Negatives are drawn uniformly or by popularity (harder negatives, as word2vec does).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field

from deepmovie.data.interactions import Interactions
from deepmovie.engine.optim import intra_op_threads
from deepmovie.models.base import DataInfo
from deepmovie.models.factors import to_numpy
from deepmovie.models.layers import embedding
from deepmovie.models.minibatch import MiniBatchModel, MiniBatchParams
from deepmovie.models.ranking.base import RankingModel, RankingParams
from deepmovie.models.registry import MODELS


class BPRParams(MiniBatchParams, RankingParams):
    """Defaults chosen on validation NDCG@10 of ml-latest-small (random:0.2, seed 0): Adam at lr 0.01 peaks
    at epoch 2 near popularity, 0.001 at about epoch 25; reg in {0, 1e-4, 1e-3}, 128 factors and 4
    negatives changed nothing that mattered, and popularity sampling ranked worse (NDCG@10 0.13 vs 0.18).
    """

    epochs: int = Field(40, ge=1, description="passes over the positive interactions")
    patience: int = Field(5, ge=0, description="stop after this many epochs without a better valid NDCG")
    lr: float = Field(0.001, gt=0, description="learning rate (Adam: SparseAdam on the tables)")
    factors: int = Field(64, ge=1, description="k, the width of p_u and q_i")
    init_std: float = Field(0.1, gt=0, description="std of the normal initialisation of the factors")
    reg: float = Field(
        1e-4, ge=0, description="L2 on the rows a pair touches: p_u, q_i, q_j, b_i, b_j (summed squares)"
    )
    negatives: int = Field(1, ge=1, description="negative items j drawn per positive (u, i)")
    sampler: Literal["uniform", "popularity"] = Field(
        "uniform", description="how j is drawn: uniformly over items, or proportionally to count^exponent"
    )
    popularity_exponent: float = Field(
        0.75, ge=0, description="the popularity sampler's exponent on counts (0: uniform over seen items)"
    )


@MODELS.register("bpr")
class BPR(MiniBatchModel, RankingModel):
    """``x_ui = p_u . q_i + b_i`` trained on ``-log sigmoid(x_ui - x_uj)`` over sampled negatives j.

    A sampled j may be one of u's own positives; it is kept, as most implementations do (the paper draws j
    outside them): with thousands of items a collision is rare, and rejecting it would need a membership
    test per draw.
    """

    Params = BPRParams
    params: BPRParams

    def __init__(self, params: BPRParams, info: DataInfo) -> None:
        super().__init__(params, info)
        self.user_factors = embedding(info.n_users, params.factors, params.init_std, params.sparse)
        self.item_factors = embedding(info.n_items, params.factors, params.init_std, params.sparse)
        self.item_bias = torch.nn.Embedding(info.n_items, 1, sparse=params.sparse)
        torch.nn.init.zeros_(self.item_bias.weight)

    def prepare(self, train: Interactions, seed: int) -> None:
        """Training rows are the positive interactions; the sampler's distribution is built once."""
        positives = self.interactions(train).tocoo()
        rows = Interactions(
            positives.row.astype(np.int32),
            positives.col.astype(np.int32),
            positives.data,
            self.info.n_users,
            self.info.n_items,
        )
        super().prepare(rows, seed)
        self._cdf: torch.Tensor | None = None
        if self.params.sampler == "popularity":
            counts = torch.as_tensor(np.bincount(rows.items, minlength=self.info.n_items)).double()
            weights = torch.where(counts > 0, counts**self.params.popularity_exponent, 0.0)
            self._cdf = torch.cumsum(weights, 0) / weights.sum()
        self._draws = self.epoch_generator(0)

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The seeded row order, and a negative-sampling stream seeded by the same (seed, epoch)."""
        self._draws = torch.Generator().manual_seed(self._seed * 1_000_003 + epoch + 500_009)
        return super().epoch_order(epoch)

    def train_epoch(self, epoch: int) -> float:
        """One epoch on one intra-op thread: a batch is a few gathers over batch x factors values, too
        small to split, and on a busy machine the threads' hand-offs dominate (ml-latest-small on 2 shared
        cores: about 10 s per epoch with 2 threads, 0.3 s with 1), as for the fused SGD path."""
        with intra_op_threads(1):
            return super().train_epoch(epoch)

    def training_rows(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(users, positive items, ``(len(rows), negatives)`` sampled items): the third column of a BPR
        row is its negatives, as a rating is a rating model's."""
        users, items, _ = super().training_rows(rows)
        shape = (len(rows), self.params.negatives)
        if self._cdf is None:
            negatives = torch.randint(self.info.n_items, shape, generator=self._draws)
        else:  # inverse-CDF search: no alias table, and zero-count items are never drawn
            uniform = torch.rand(shape, generator=self._draws, dtype=torch.float64)
            negatives = torch.searchsorted(self._cdf, uniform, right=True).clamp_(max=self.info.n_items - 1)
        return users, items, negatives.to(users.device)

    def batch_loss(
        self, users: torch.Tensor, items: torch.Tensor, negatives: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(BPR log-loss + L2 on the touched rows, the BPR log-loss), summed over the batch's pairs."""
        p, q_i, q_j = self.user_factors(users), self.item_factors(items), self.item_factors(negatives)
        b_i, b_j = self.item_bias(items)[:, 0], self.item_bias(negatives)[..., 0]
        x_ui = (p * q_i).sum(-1) + b_i
        x_uj = (p[:, None, :] * q_j).sum(-1) + b_j
        loss = -torch.nn.functional.logsigmoid(x_ui[:, None] - x_uj).sum()
        penalty = sum((t * t).sum() for t in (p, q_i, q_j, b_i, b_j))
        return loss + self.params.reg * penalty, loss.detach()

    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        users, items = users.long(), items.long()
        dots = (self.user_factors(users) * self.item_factors(items)).sum(-1)
        return dots + self.item_bias(items)[:, 0]

    def item_embeddings(self) -> np.ndarray:
        return to_numpy(self.item_factors.weight)

    def score_items(self, users: torch.Tensor) -> torch.Tensor:
        return self.user_factors(users.long()) @ self.item_factors.weight.T + self.item_bias.weight[:, 0]

    def attach(self, seen: Interactions) -> None:
        """Nothing to keep: BPR's scores read no history."""

    @torch.no_grad()
    def fold_in(self, items: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        """A new user's scores with ``p_u`` = the mean of the item factors of their positives.

        An approximation: the trained ``p_u`` would come from gradient steps, and the mean ``q`` points
        where those items point, so items like them rank first. With no positive, ``p_u = 0`` and the
        item biases (a popularity order) rank. There is deliberately no factor view, since serving's
        ridge fold-in regresses ratings, which BPR's scores are not.
        """
        liked = self.given_row(items, ratings)[0] > 0
        q = self.item_factors.weight
        vector = q[liked].mean(0) if bool(liked.any()) else torch.zeros(q.shape[1], device=q.device)
        return (q @ vector + self.item_bias.weight[:, 0]).float().cpu().numpy()
