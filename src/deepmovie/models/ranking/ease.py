"""EASE^R (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019).

An item x item weight matrix ``B`` with a zero diagonal that reconstructs each user's interaction
row from their other items, ``min |X - XB|^2 + lambda |B|^2``, has the closed form
``P = (X^T X + lambda I)^-1``, ``B = -P / diag(P)`` (column-wise), ``diag(B) = 0``: one float64
Cholesky solve of the item Gram matrix, no epochs, and a strong top-N baseline. A user's scores are
their history row times ``B``; a new user is the same product over their given items.

Two options go past the paper, for data whose ratings say more than "seen": ``input: rating`` feeds the
ratings themselves as the input rows, and ``target_rating`` makes the regression's target the liked
items only (rating >= it), ``min |Y - XB|^2 + lambda |B|^2`` with ``diag(B) = 0``. Its closed form is
``B = P X^T Y - P diag(gamma)``, ``gamma_j = (P X^T Y)_jj / P_jj`` (a Lagrange multiplier per zero
diagonal entry), which is Steck's ``-P / diag(P)`` when ``Y = X`` is binary.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field

from deepmovie.data.interactions import Interactions
from deepmovie.errors import DeepMovieError
from deepmovie.models.base import DataInfo
from deepmovie.models.ranking.base import RankingModel, RankingParams
from deepmovie.models.registry import MODELS

BLOCK = 1 << 24  # item x item entries built or solved at once (the Gram's blocks, the inverse's columns)


def block_width(n: int) -> int:
    """Items per block: about an eighth of the catalogue (the triangular savings), at least 512 (BLAS
    efficiency), and at most ``BLOCK`` entries."""
    return max(1, min(BLOCK // max(n, 1), max(-(-n // 8), 512)))


class EASEParams(RankingParams):
    reg: float = Field(
        500.0,
        gt=0,
        description="lambda of lambda |B|^2; 500 suits ML-100K/ML-1M, the paper uses more on ML-20M "
        "and Netflix (larger catalogues and counts want a larger lambda)",
    )
    input: Literal["binary", "rating"] = Field(
        "binary", description="what an interaction weighs in the input rows: 1, or its rating"
    )
    target_rating: float | None = Field(
        None, description="regress onto the liked items only (rating >= this); None: onto the input (Steck)"
    )
    tol: float = Field(0.0, ge=0, le=0, description="closed form: one epoch fits, no tolerance stop")


def cross(left: sp.csr_matrix, right: sp.csr_matrix, device: torch.device) -> torch.Tensor:
    """``L^T R`` as a dense float64 ``(items, items)`` tensor on ``device``, in column blocks."""
    n = left.shape[1]
    left_t, right_t = sp.csr_matrix(left.T), sp.csr_matrix(right.T)
    out = torch.empty(n, n, dtype=torch.float64, device=device)
    step = block_width(n)
    for start in range(0, n, step):
        stop = min(n, start + step)
        out[:, start:stop] = torch.as_tensor((left_t @ right_t[start:stop].T).toarray(), device=device)
    return out


def gram(matrix: sp.csr_matrix, device: torch.device) -> torch.Tensor:
    """``X^T X`` as a dense float64 ``(items, items)`` tensor on ``device``, built in column blocks of
    the upper triangle (each block mirrored): no second item x item copy is held, and the sparse products
    do about half the work of the whole ``X^T X``."""
    n = matrix.shape[1]
    by_item = sp.csr_matrix(matrix.T)  # items x users
    out = torch.empty(n, n, dtype=torch.float64, device=device)
    step = block_width(n)
    for start in range(0, n, step):
        stop = min(n, start + step)
        block = (by_item[:stop] @ by_item[start:stop].T).toarray()  # sums of rating products: exact
        block = torch.as_tensor(block, device=device).to(torch.float64)
        out[:stop, start:stop] = block
        out[start:stop, :stop] = block.T
    return out


def invert_in_place(factor: torch.Tensor) -> torch.Tensor:
    """Overwrite the Cholesky factor ``L`` of ``G`` with ``G^-1``, a block of columns at a time.

    Column block ``[s, e)`` of the lower triangle is ``P[s:, s:e] = L_s^-T (L_s^-1 E)`` with
    ``L_s = L[s:, s:]`` and ``E`` the identity's columns (zero above ``s``, so the trailing factor is
    all a block needs): about ``0.8 n^3`` flops with eighth-wide blocks (``2/3 n^3`` in the limit, as
    LAPACK's ``potri``, which MKL runs several times slower on CPU) against ``2 n^3`` for
    ``cholesky_solve`` of a whole identity. A finished block no longer needs its columns of ``L``, so
    it overwrites them (its mirrored rows go over ``L``'s unused upper triangle): a trailing copy is
    the only other matrix held."""
    n = factor.shape[0]
    step = block_width(n)
    for start in range(0, n, step):
        stop = min(n, start + step)
        trailing = factor[start:, start:].contiguous()
        rhs = torch.zeros(n - start, stop - start, dtype=factor.dtype, device=factor.device)
        rhs[: stop - start].fill_diagonal_(1.0)
        half = torch.linalg.solve_triangular(trailing, rhs, upper=False)
        del rhs
        block = torch.linalg.solve_triangular(trailing.mT, half, upper=True)
        del trailing, half
        factor[start:, start:stop] = block
        factor[start:stop, start:] = block.T
    return factor


@MODELS.register("ease")
class EASE(RankingModel):
    """``scores = x_u B`` with ``B`` the zero-diagonal ridge regression of every item on the others."""

    Params = EASEParams
    params: EASEParams

    def __init__(self, params: EASEParams, info: DataInfo) -> None:
        super().__init__(params, info)
        # B, item x item; empty until the fit (a loaded model takes the saved size), so building the
        # model never allocates what the memory check may refuse.
        self.register_buffer("item_weights", torch.zeros(0, 0))
        self._loss = 0.0

    @property
    def steck(self) -> bool:
        """The paper's EASE (binary input regressed onto itself)."""
        return self.params.input == "binary" and self.params.target_rating is None

    def interaction_values(self, ratings: np.ndarray) -> np.ndarray:
        if self.params.input == "rating":
            return np.asarray(ratings, dtype=np.float32)
        return super().interaction_values(ratings)

    def prepare(self, train: Interactions, seed: int) -> None:
        self.attach(train)
        self._train = self.history
        if not self.steck:
            target = self.params.target_rating
            liked = self._train.copy()
            if target is not None:  # the liked interactions, as ones (the input's other rows are 0)
                rated = train.subset(train.ratings >= max(target, self.params.positive_rating))
                liked = sp.csr_matrix(
                    (np.ones(len(rated), np.float32), (rated.users, rated.items)), shape=self._train.shape
                )
            self._targets = liked
        # Items without a training interaction have a Gram row of zeros: their P is 1/lambda on the
        # diagonal, their B row and column exactly 0, so only the others enter the solve.
        self._active = np.flatnonzero(np.bincount(self._train.indices, minlength=self.info.n_items))
        self.check_memory()

    def check_memory(self) -> None:
        """Refuse a catalogue whose item x item matrices do not fit, before allocating any."""
        n, m = self.info.n_items, len(self._active)
        # Peak: two float64 m x m matrices (the Gram and its factor, then the inverse and a trailing
        # copy of the factor), or the float32 n x n B beside the last; plus a few blocks.
        need = (16 if self.steck else 24) * m * m + 4 * n * n + 32 * min(BLOCK, m * m)
        active = f" ({m:,} with interactions)" if m < n else ""
        self.require_memory(
            need, f"the item x item matrices of {n:,} items{active}", "; use item-knn, or fewer items"
        )

    def train_epoch(self, epoch: int) -> float:
        """Solve for ``B`` (epoch 1; later epochs keep it). Returns the training squared reconstruction
        error ``|Y - XB|^2`` per interaction (``Y = X`` for the paper's EASE)."""
        if epoch == 1 or self.item_weights.numel() == 0:
            self._loss = self.fit()
        return self._loss

    def fit(self) -> float:
        matrix, reg, n, device = self._train, self.params.reg, self.info.n_items, self.device
        active = self._active
        whole = len(active) == n
        self.item_weights = torch.zeros(0, 0, device=device)  # a refit frees the old B first
        g = gram(matrix if whole else matrix[:, active], device)
        g.diagonal().add_(reg)
        factor, info = torch.linalg.cholesky_ex(g)
        del g
        if int(info) != 0:
            raise DeepMovieError(f"ease: the Gram matrix plus lambda={reg:g} is not positive definite")
        p = invert_in_place(factor)
        del factor
        if self.steck:
            diag = p.diagonal().clone()
            # X(I - B) = X P D^-1 and P X^T X P = P - lambda P^2, so |X - XB|^2 needs no product with X.
            squared = float(((diag - reg * torch.linalg.vector_norm(p, dim=0) ** 2) / diag**2).sum())
            p.div_(-diag)  # column j divided by -P_jj
            p.diagonal().zero_()
            weights = p.float()
            del p
        else:
            targets = self._targets if whole else self._targets[:, active]
            weights = self.constrained(p, cross(matrix if whole else matrix[:, active], targets, device))
            squared = self.residual(matrix if whole else matrix[:, active], targets, weights)
        if not whole:
            index = torch.as_tensor(active, device=device)
            full = torch.zeros(n, n, device=device)
            full[index[:, None], index[None, :]] = weights
            weights = full
        self.item_weights = weights
        return float(squared) / max(matrix.nnz, 1)

    @staticmethod
    def constrained(p: torch.Tensor, xty: torch.Tensor) -> torch.Tensor:
        """``B = P X^T Y - P diag(gamma)`` with ``gamma`` making ``diag(B) = 0``, as float32."""
        weights = p @ xty
        del xty
        gamma = weights.diagonal() / p.diagonal()
        weights -= p * gamma[None, :]
        weights.diagonal().zero_()
        return weights.float()

    def residual(self, inputs: sp.csr_matrix, targets: sp.csr_matrix, weights: torch.Tensor) -> float:
        """``|Y - XB|^2`` over the training rows, a block of users at a time."""
        total, step = 0.0, max(1, BLOCK // max(weights.shape[1], 1))
        for start in range(0, inputs.shape[0], step):
            rows = slice(start, start + step)
            predicted = torch.as_tensor(inputs[rows].toarray(), device=weights.device) @ weights
            wanted = torch.as_tensor(targets[rows].toarray(), device=weights.device)
            total += float(((wanted - predicted) ** 2).sum())
        return total

    def item_neighbours(self, items: np.ndarray, columns: np.ndarray | None = None) -> np.ndarray:
        """Rows of ``B`` (or their ``columns``): how much having item j adds to every item's score."""
        rows = torch.as_tensor(items, device=self.device).long()
        if columns is None:
            return self.item_weights[rows].cpu().numpy()
        columns = torch.as_tensor(columns, device=self.device).long()
        return self.item_weights[rows[:, None], columns[None, :]].cpu().numpy()  # only those entries

    def score_items(self, users: torch.Tensor) -> torch.Tensor:
        return self.scores(self.history[users.cpu().numpy()])

    def fold_in(self, items: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        row = sp.csr_matrix(self.given_row(items, ratings).cpu().numpy())
        return self.scores(row)[0].cpu().numpy()

    def scores(self, rows: sp.csr_matrix) -> torch.Tensor:
        """``rows @ B`` for history rows, as a sparse x dense product: it reads only the rows of ``B`` a
        user interacted with, a few hundred of the catalogue's, where a dense product reads all. One row
        (a served request) is a gather and a vector-matrix product, without the sparse tensor's set-up."""
        if rows.shape[0] == 1:
            items = torch.as_tensor(rows.indices, dtype=torch.long, device=self.device)
            values = torch.as_tensor(rows.data, dtype=torch.float32, device=self.device)
            return (values @ self.item_weights.index_select(0, items))[None]
        rows.sort_indices()
        with warnings.catch_warnings():  # "sparse CSR support is in beta": sparse @ dense is not
            warnings.simplefilter("ignore", UserWarning)
            history = torch.sparse_csr_tensor(
                torch.as_tensor(rows.indptr, dtype=torch.long),
                torch.as_tensor(rows.indices, dtype=torch.long),
                torch.as_tensor(rows.data, dtype=torch.float32),
                rows.shape,
            ).to(self.device)
        return history @ self.item_weights
