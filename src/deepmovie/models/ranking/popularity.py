"""Most-popular: every user gets the items with the most training interactions.

The baseline every personalised ranking model must beat (Cremonesi et al., RecSys 2010, found it
hard to beat on accuracy alone); it knows nothing of the user, so a new user's fold-in is the same list.
"""

from __future__ import annotations

import numpy as np
import torch

from deepmovie.data.interactions import Interactions
from deepmovie.models.base import DataInfo
from deepmovie.models.ranking.base import RankingModel, RankingParams
from deepmovie.models.registry import MODELS


class PopularityParams(RankingParams):
    """Only what an interaction is (``positive_rating``) and the one epoch that counts them."""


@MODELS.register("popularity")
class Popularity(RankingModel):
    """Scores every item by its number of training interactions, the same for every user."""

    Params = PopularityParams
    params: PopularityParams

    def __init__(self, params: PopularityParams, info: DataInfo) -> None:
        super().__init__(params, info)
        self.register_buffer("counts", torch.zeros(info.n_items))

    def prepare(self, train: Interactions, seed: int) -> None:
        self._train = self.interactions(train)

    def train_epoch(self, epoch: int) -> float:
        """Count each item's interactions (epoch 1; later epochs have nothing left to learn).

        Returns 0.0: counting fits exactly, there is no training error to report."""
        counts = np.bincount(self._train.indices, minlength=self.info.n_items)
        self.counts.copy_(torch.as_tensor(counts, dtype=torch.float32))
        return 0.0

    def score_items(self, users: torch.Tensor) -> torch.Tensor:
        return self.counts.repeat(len(users), 1)

    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.counts[items.long()].to(users.device)

    def fold_in(self, items: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        return self.counts.cpu().numpy().copy()
