"""What every ranking model shares: interactions from ratings, the user histories it reads, and
``predict`` as a gather from ``score_items`` (so the two can never disagree).

A rating counts as an interaction when it is at least ``positive_rating`` (0: every rating, the
usual implicit-feedback reading of MovieLens). Item-based models (EASE, item-kNN) score a user from
their history row, so they keep the interactions they were trained on, and a served model gets the
seen ones through ``attach``; a new user is the same product over their given items (``fold_in``).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field

from deepmovie.data.interactions import Interactions
from deepmovie.models.base import Model, ModelParams, Task

SCORE_BLOCK = 1 << 22  # scores held at once by predict's gather (users x items)


class RankingParams(ModelParams):
    epochs: int = Field(1, ge=1, description="epochs (closed-form models fit in one)")
    patience: int = Field(0, ge=0)
    positive_rating: float = Field(
        0.0, description="ratings at or above this count as interactions (0: every rating)"
    )


class RankingModel(Model):
    """Base of the implicit-task models; subclasses define ``score_items`` (and may define ``predict``)."""

    Params = RankingParams
    params: RankingParams

    @property
    def task(self) -> Task:
        return "implicit"

    def interactions(self, data: Interactions) -> sp.csr_matrix:
        """Users x items CSR of the interactions (ratings at or above ``positive_rating``), each
        carrying :meth:`interaction_values` (float32, sorted indices)."""
        kept = data.ratings >= self.params.positive_rating
        matrix = sp.csr_matrix(
            (self.interaction_values(data.ratings[kept]), (data.users[kept], data.items[kept])),
            shape=(self.info.n_users, self.info.n_items),
        )
        matrix.sort_indices()
        return matrix

    def interaction_values(self, ratings: np.ndarray) -> np.ndarray:
        """What an interaction weighs in the model's input rows: 1 (binary implicit feedback)."""
        return np.ones(len(ratings), np.float32)

    def attach(self, seen: Interactions) -> None:
        """The histories ``score_items`` reads (item-based models): the interactions of ``seen``."""
        self.history = self.interactions(seen)

    def history_rows(self, users: torch.Tensor) -> torch.Tensor:
        """Dense ``(len(users), n_items)`` rows of the attached histories, on the model's device."""
        block = self.history[users.cpu().numpy()]
        return torch.as_tensor(block.toarray(), dtype=torch.float32, device=self.device)

    def given_row(self, items: np.ndarray, ratings: np.ndarray) -> torch.Tensor:
        """A new user's ratings as one 0/1 interaction row (those at or above ``positive_rating``)."""
        row = torch.zeros(1, self.info.n_items, device=self.device)
        ratings = np.asarray(ratings, dtype=np.float64)
        kept = ratings >= self.params.positive_rating
        values = torch.as_tensor(self.interaction_values(ratings[kept]), device=self.device)
        row[0, torch.as_tensor(np.asarray(items)[kept], device=self.device).long()] = values
        return row

    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of (user, item) pairs, gathered from ``score_items`` of their distinct users."""
        out = torch.empty(len(users), device=users.device)
        if len(users) == 0:
            return out
        distinct, inverse = torch.unique(users.long(), return_inverse=True)
        chunk = max(1, SCORE_BLOCK // max(self.info.n_items, 1))
        for start in range(0, len(distinct), chunk):
            rows = self.score_items(distinct[start : start + chunk]).to(out.device)
            mine = (inverse >= start) & (inverse < start + chunk)
            out[mine] = rows[inverse[mine] - start, items[mine].long()].float()
        return out
