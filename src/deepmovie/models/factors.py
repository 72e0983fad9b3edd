"""The factor view of a model, ``offset + b_u + b_i + x_u . q_i``: what serving needs of factor models.

A model that is one (mf, biased-mf, svdpp, pmf, the hybrid, the bias baselines) returns this view from
:meth:`~deepmovie.models.base.Model.factors`. A user's scores for every item are then one
matrix-vector product over precomputed item factors, and a new user is folded in by the closed-form
ridge solve ALS makes per user, with the model's own regularization: no retraining.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Factors:
    """A model as ``offset + b_u + b_i + x_u . q_i``, with the rule its user side was trained by."""

    offset: float
    user_vectors: np.ndarray  # (n_users, k)
    user_bias: np.ndarray  # (n_users,)
    item_factors: np.ndarray  # (n_items, k)
    item_bias: np.ndarray  # (n_items,)
    reg_vector: float
    reg_bias: float | None  # None: the model has no user bias
    reg_by_count: bool  # the penalty grows with the user's rating count (per-rating SGD, ALS-WR)
    implicit: np.ndarray | None = None  # SVD++'s y_j: a user's rated items add to their vector

    def scores(self, vector: np.ndarray, bias: float) -> np.ndarray:
        """Every item's score for a user given by ``(vector, bias)``."""
        return self.offset + bias + self.item_bias + matvec(self.item_factors, vector)

    def user_scores(self, user: int) -> np.ndarray:
        return self.scores(self.user_vectors[user], self.user_bias[user])

    def pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Scores of (user, item) index pairs."""
        dots = np.einsum("ij,ij->i", self.user_vectors[users], self.item_factors[items])
        return self.offset + self.user_bias[users] + self.item_bias[items] + dots

    def fold_in(self, items: np.ndarray, ratings: np.ndarray) -> tuple[np.ndarray, float]:
        """(vector, bias) minimising the model's own regularized squared error on ``ratings`` with every
        item fixed: the closed-form ridge solve ALS makes for each user, no retraining."""
        n, k = len(items), self.item_factors.shape[1]
        q = torch.from_numpy(self.item_factors[items]).double()
        base = torch.zeros(k, dtype=torch.float64)
        if self.implicit is not None:
            base = torch.from_numpy(self.implicit[items]).double().sum(0) / n**0.5
        target = torch.from_numpy(ratings - self.offset - self.item_bias[items]).double() - q @ base
        design, penalty = q, [self.reg_vector] * k
        if self.reg_bias is not None:
            design, penalty = (
                torch.cat([q, torch.ones(n, 1, dtype=torch.float64)], 1),
                [*penalty, self.reg_bias],
            )
        if design.shape[1] == 0:
            return base.float().numpy(), 0.0
        scale = n if self.reg_by_count else 1
        gram = design.T @ design + torch.diag(torch.tensor(penalty, dtype=torch.float64) * scale)
        rhs = (design.T @ target)[:, None]
        factor, info = torch.linalg.cholesky_ex(gram)
        if int(info):  # singular: a regularization of 0 is allowed
            solution = torch.linalg.lstsq(gram, rhs).solution[:, 0]
        else:
            solution = torch.cholesky_solve(rhs, factor)[:, 0]
        bias = float(solution[k]) if self.reg_bias is not None else 0.0
        return (base + solution[:k]).float().numpy(), bias


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A float32 NumPy copy: products over arrays that alias torch's memory ran ten times slower here."""
    return tensor.detach().float().cpu().numpy().copy()


def matvec(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """``matrix @ vector`` through torch: NumPy's multithreaded OpenBLAS gemv was 10-50x slower on a
    loaded machine (threads spinning on busy cores), torch's stays steady."""
    return torch.mv(
        torch.from_numpy(matrix), torch.from_numpy(np.ascontiguousarray(vector, matrix.dtype))
    ).numpy()
