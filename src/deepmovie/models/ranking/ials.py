"""iALS: weighted matrix factorization for implicit feedback (Hu, Koren and Volinsky, ICDM 2008), with
the loss and settings of Rendle, Zhang and Koren, "Revisiting the Performance of iALS on Item
Recommendation Benchmarks" (RecSys 2022, arXiv 2110.14037).

With ``y_ui = w_u . h_i`` the loss is

    sum_{(u,i) observed} c (1 - y_ui)^2 + alpha0 sum_{all (u,i)} y_ui^2
      + reg (sum_u (|I_u| + alpha0 |I|)^nu |w_u|^2 + sum_i (|U_i| + alpha0 |U|)^nu |h_i|^2)

with ``c = 1 + alpha`` (``alpha = 0``, the default, is Rendle et al.'s form). The all-pairs term never
touches the dense matrix: for a user it is ``alpha0 w_u^T (H^T H) w_u``, one ``k x k`` Gram per
half-sweep. Each row is then solved exactly,

    (alpha0 H^T H + c sum_{i in I_u} h_i h_i^T + reg_u I) w_u = c sum_{i in I_u} h_i,

by one of two solvers, both sharded under ``torchrun`` as ``pmf`` is (each rank its share of the rows).
In the eigenbasis of ``H^T H`` the shared part ``alpha0 H^T H + reg_u I`` is diagonal, which both use:

- ``cg`` (the default): a few conjugate-gradient steps per row, started from the row's last value and
  preconditioned by the system's diagonal in that basis (Takacs et al. 2011; what ``implicit`` does).
  All rows step together: a step is one sampled dense-dense product and one sparse-dense product over
  the interactions, ``O(nnz k)`` a sweep instead of the exact solve's ``O(nnz k^2)``.
- ``exact``: rows padded by length (:class:`~deepmovie.models.factorization.als.PaddedRows`: one
  ``bmm`` and a batched Cholesky per chunk); a row with fewer interactions than factors is solved in its
  dual (Woodbury) form, an ``|I_u| x |I_u|`` system instead of ``k x k``.

A sweep solves the items, then the users. ``fold_in`` always solves exactly, so with ``exact`` every
trained user vector is exactly the fold-in of their history against the final items (``recommend`` and
``recommend_new`` of a known user's history agree); with ``cg`` they agree as far as the sweeps have
converged.
"""

from __future__ import annotations

import warnings
from typing import Literal, NamedTuple

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field

from deepmovie.data.interactions import Interactions
from deepmovie.engine import distributed
from deepmovie.errors import DeepMovieError
from deepmovie.models.base import DataInfo
from deepmovie.models.factorization.als import PAD_RATIO, PaddedRows, deal_rows
from deepmovie.models.factors import to_numpy
from deepmovie.models.ranking.base import RankingModel, RankingParams
from deepmovie.models.registry import MODELS


class IALSParams(RankingParams):
    """``alpha0`` and ``reg`` chosen on the validation NDCG@10 of ML-1M (random 0.2 split, every rating
    an interaction, 64 factors): alpha0 in {0.03, 0.1, 0.2, 0.3, 0.5, 0.7, 1}, reg in {0.001 .. 0.1};
    the best lie on a ridge of alpha0 x reg ~ 3e-3 (0.3 x 0.01, 0.5 x 0.006, 0.7 x 0.006 within 0.002).
    ``nu`` = 1 and ``init_std`` follow Rendle et al."""

    epochs: int = Field(16, ge=1, description="sweeps (all items given the users, then all users)")
    patience: int = Field(0, ge=0, description="stop after this many sweeps without a better valid NDCG")
    factors: int = Field(64, ge=1, description="k, the size of the user and item vectors")
    alpha0: float = Field(0.5, gt=0, description="weight of the squared score of every (user, item) pair")
    alpha: float = Field(
        0.0, ge=0, description="extra confidence of observed pairs: their weight is c = 1 + alpha (Hu et al.)"
    )
    reg: float = Field(0.006, gt=0, description="lambda, the ridge weight before frequency scaling")
    nu: float = Field(
        1.0, ge=0, description="row ridge is reg * (interactions + alpha0 * other side's size) ** nu"
    )
    init_std: float | None = Field(
        None, gt=0, description="std of the initial vectors (None: 0.1 / sqrt(factors), Rendle et al.)"
    )
    solver: Literal["cg", "exact"] = Field(
        "cg", description="cg: a few conjugate-gradient steps per row and sweep; exact: batched Cholesky"
    )
    cg_steps: int = Field(3, ge=1, description="conjugate-gradient steps per row and half-sweep (cg)")
    solve_budget: int = Field(
        1 << 17, ge=256, description="padded interactions per batched solve (exact; memory vs fewer batches)"
    )


@MODELS.register("ials")
class IALS(RankingModel):
    """``score(u, i) = w_u . h_i``, each side solved exactly given the other (Hu et al. 2008; Rendle et
    al. 2022's all-pairs weight and frequency-scaled ridge)."""

    Params = IALSParams
    params: IALSParams

    def __init__(self, params: IALSParams, info: DataInfo) -> None:
        super().__init__(params, info)
        std = params.init_std if params.init_std is not None else 0.1 / params.factors**0.5
        self.register_buffer("user_factors", torch.randn(info.n_users, params.factors) * std)
        self.register_buffer("item_factors", torch.randn(info.n_items, params.factors) * std)

    @property
    def confidence(self) -> float:
        return 1.0 + self.params.alpha

    def ridge(self, counts: torch.Tensor, other_side: int) -> torch.Tensor:
        """Each row's ridge weight ``reg * (count + alpha0 * other_side) ** nu`` (Rendle et al.)."""
        p = self.params
        return p.reg * (counts.to(torch.float64) + p.alpha0 * other_side) ** p.nu

    def prepare(self, train: Interactions, seed: int) -> None:
        by_user = self.interactions(train)
        by_item = sp.csr_matrix(by_user.T)
        by_item.sort_indices()
        self._check_memory(by_user.nnz)
        device, budget, k = self.device, self.params.solve_budget, self.params.factors
        part = (distributed.rank(), distributed.world_size())  # torchrun: each rank solves its share
        n_users, n_items = self.info.n_users, self.info.n_items
        if self.params.solver == "cg":
            dtype = self.item_factors.dtype
            self._by_user: _Side | _SparseSide = _SparseSide(by_user, device, dtype, part)
            self._by_item: _Side | _SparseSide = _SparseSide(by_item, device, dtype, part)
        else:
            self._by_user = _Side(
                PaddedRows.from_csr(by_user, by_user.data, device, budget, part), n_items, budget, k
            )
            self._by_item = _Side(
                PaddedRows.from_csr(by_item, by_item.data, device, budget, part), n_users, budget, k
            )
        self._user_ridge = self.ridge(self._by_user.counts, n_items).to(self.user_factors.dtype)
        self._item_ridge = self.ridge(self._by_item.counts, n_users).to(self.item_factors.dtype)
        self._n_interactions = by_user.nnz

    def _check_memory(self, nnz: int) -> None:
        """Refuse a fit whose padded rows, factors and solve batches exceed the device's free memory."""
        k, budget, rows = self.params.factors, self.params.solve_budget, self.info.n_users + self.info.n_items
        if self.params.solver == "cg":
            # Per interaction and side: its column and two values; the vectors and about ten (rows, k)
            # working copies (rotated, warm start, residual, direction, products, preconditioner).
            need = 2 * nnz * (8 + 4 + 4) + 12 * 4 * k * rows
        else:
            # Per padded entry and side: the columns twice (PaddedRows', then ours), its values and mask.
            padded = 2 * nnz / PAD_RATIO * (8 + 8 + 4 + 4)
            factors = 3 * 4 * (k + 1) * rows  # vectors, padded copies
            batch = 4 * 4 * budget * (k + 1)  # gathered rows, systems, their Cholesky factors
            need = padded + factors + batch
        self.require_memory(int(need), f"{nnz:,} interactions with {k} factors")

    def train_epoch(self, epoch: int) -> float:
        """One sweep (items, then users); returns the loss above per observed interaction, exact after the
        sweep at no extra cost: with each user solved, ``c n_u - w_u . b_u`` is their share of it (``b_u``
        the right-hand side), and the items' ridge is all that remains."""
        if not hasattr(self, "_by_user"):
            raise DeepMovieError(f"{self.name}: call prepare(train, seed) before training")
        self.sweep_items()
        explained = self.sweep_users()
        items = self.item_factors
        ridge = float((self._item_ridge * items.square().sum(1)).sum())
        loss = self.confidence * self._n_interactions - explained + ridge
        return loss / max(self._n_interactions, 1)

    def sweep_items(self) -> float:
        """Solve every item given the users; returns ``sum_i h_i . b_i`` (see :meth:`train_epoch`)."""
        return self._solve(self._by_item, self.user_factors, self.item_factors, self._item_ridge)

    def sweep_users(self) -> float:
        """Solve every user given the items; returns ``sum_u w_u . b_u`` (see :meth:`train_epoch`)."""
        return self._solve(self._by_user, self.item_factors, self.user_factors, self._user_ridge)

    def _solve(
        self, side: _Side | _SparseSide, fixed: torch.Tensor, out: torch.Tensor, ridge: torch.Tensor
    ) -> float:
        """Overwrite ``out`` with every row's solution (rows with no interaction get 0)."""
        if isinstance(side, _SparseSide):
            return self._conjugate_gradient(side, fixed, out, ridge)
        basis = self._basis(fixed)
        explained = torch.zeros((), device=fixed.device, dtype=torch.float64)
        out.zero_()
        for rows, cols in side.batches:
            solution, row_explained = self._solve_batch(basis, cols, ridge[rows])
            out[rows] = solution
            explained += row_explained.sum()
        if side.owners is not None:
            distributed.all_gather_rows(out, side.owners)
        return float(distributed.all_reduce_sum(explained))

    def _conjugate_gradient(
        self, side: _SparseSide, fixed: torch.Tensor, out: torch.Tensor, ridge: torch.Tensor
    ) -> float:
        """``cg_steps`` preconditioned CG steps on every row's system ``(D + c X^T X) x = b = c X^T 1``
        in the eigenbasis (``D = alpha0 lambda + ridge`` diagonal, the preconditioner ``D + c diag(X^T
        X)``), from the row's current value. Returns ``sum x . b + x . r`` (``r`` the final residual):
        the loss identity of :meth:`train_epoch` for inexact solutions too."""
        rotation, scale = self._eigen(fixed)
        c, rotated = self.confidence, fixed @ rotation
        diagonal = scale + ridge[:, None]
        x = torch.where(side.active[:, None], out @ rotation, 0.0)
        b = c * side.times(rotated)
        r = b - diagonal * x - c * side.gram_times(x, rotated)
        preconditioner = diagonal + c * side.times(rotated.square())
        z = r / preconditioner
        direction, rz = z, (r * z).sum(1)
        for step in range(self.params.cg_steps):
            product = diagonal * direction + c * side.gram_times(direction, rotated)
            curvature = (direction * product).sum(1)
            alpha = torch.where(curvature > 0, rz / curvature.clamp_min(1e-30), 0.0)[:, None]
            x += alpha * direction
            r -= alpha * product
            if step + 1 < self.params.cg_steps:
                z = r / preconditioner
                rz_next = (r * z).sum(1)
                beta = torch.where(rz > 0, rz_next / rz.clamp_min(1e-30), 0.0)[:, None]
                direction, rz = z + beta * direction, rz_next
        out.copy_(x @ rotation.T)
        if side.owners is not None:
            distributed.all_gather_rows(out, side.owners)
        explained = (x.double() * (b + r).double()).sum()
        return float(distributed.all_reduce_sum(explained))

    def _eigen(self, fixed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The eigenbasis ``Q`` of the fixed side's Gram ``F^T F = Q diag(lambda) Q^T``, where every
        row's shared part ``alpha0 F^T F + ridge I`` is the diagonal ``alpha0 lambda + ridge``, and
        ``alpha0 lambda``."""
        eigenvalues, rotation = torch.linalg.eigh(fixed.T.double() @ fixed.double())
        return rotation.to(fixed.dtype), (self.params.alpha0 * eigenvalues.clamp_min(0)).to(fixed.dtype)

    def _basis(self, fixed: torch.Tensor) -> _Basis:
        """The eigenbasis (:meth:`_eigen`) and the rotated rows ``[F Q 1; 0 0]``: a column of ones (so
        one ``bmm`` also gives ``sum h``) and a zero row that padded columns point at."""
        n, k = fixed.shape
        rotation, scale = self._eigen(fixed)
        rotated = fixed.new_zeros(n + 1, k + 1)
        rotated[:n, :k] = fixed @ rotation
        rotated[:n, k] = 1.0
        return _Basis(rotation, scale, rotated)

    def _solve_batch(
        self, basis: _Basis, cols: torch.Tensor, ridge: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(solutions, ``x . b``) of the rows whose columns are ``cols`` (B, L; padded with the zero row):
        ``(D + c X^T X) x = b = c X^T 1`` in the eigenbasis, ``D = alpha0 lambda + ridge``, ``X`` a row's
        rotated fixed rows. Rows of fewer than ``k`` interactions take the dual (Woodbury) form
        ``x = D^-1 X^T z``, ``(I / c + X D^-1 X^T) z = 1``: an L x L system instead of a k x k one."""
        c, k = self.confidence, basis.rotation.shape[0]
        gathered = basis.rotated.index_select(0, cols.reshape(-1)).view(*cols.shape, k + 1)
        vectors, given = gathered[..., :k], gathered[..., k:]  # (B, L, k), (B, L, 1): 1 where real
        diagonal = basis.scale + ridge[:, None]  # (B, k)
        if cols.shape[1] < k:
            scaled = vectors / diagonal[:, None, :]
            system = torch.bmm(scaled, vectors.mT)  # (B, L, L)
            system.diagonal(dim1=1, dim2=2).add_(1.0 / c)
            solution = torch.bmm(scaled.mT, _cholesky_solve(system, given))[..., 0]
            rhs = c * torch.bmm(vectors.mT, given)[..., 0]
        else:
            bordered = torch.bmm(gathered.mT, gathered)  # (B, k + 1, k + 1): X^T X and X^T 1
            system, rhs = bordered[:, :k, :k], c * bordered[:, :k, k:]
            if c != 1.0:
                system.mul_(c)
            system.diagonal(dim1=1, dim2=2).add_(diagonal)
            solution, rhs = _cholesky_solve(system, rhs)[..., 0], rhs[..., 0]
        return solution @ basis.rotation.T, (solution * rhs).sum(1)

    def score_items(self, users: torch.Tensor) -> torch.Tensor:
        return self.user_factors[users.long()] @ self.item_factors.T

    def item_embeddings(self) -> np.ndarray:
        return to_numpy(self.item_factors)

    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """The row dot product: ``score_items`` over the same pairs (up to float rounding)."""
        return (self.user_factors[users.long()] * self.item_factors[items.long()]).sum(-1)

    def fold_in(self, items: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        """A new user's scores: the training user solve against the fixed items (their interactions are
        the ratings >= ``positive_rating``)."""
        vector = self.fold_in_vector(items, ratings)
        return to_numpy(self.item_factors @ vector)

    def fold_in_vector(self, items: np.ndarray, ratings: np.ndarray) -> torch.Tensor:
        """The user vector of a new user, solved exactly as a training user's is."""
        given = torch.nonzero(self.given_row(items, ratings)[0]).view(1, -1)
        basis = self._basis(self.item_factors)
        ridge = self.ridge(torch.tensor([given.shape[1]]), self.info.n_items)
        return self._solve_batch(basis, given, ridge.to(self.item_factors))[0][0]


class _Basis(NamedTuple):
    rotation: torch.Tensor  # (k, k) Q, the eigenvectors of the fixed side's Gram
    scale: torch.Tensor  # (k,) alpha0 times its eigenvalues
    rotated: torch.Tensor  # (n + 1, k + 1) [F Q 1; 0 0]


def _cholesky_solve(system: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """``system^-1 rhs`` for a batch of symmetric positive definite systems; two triangular solves after
    the Cholesky factor (several times faster than ``cholesky_solve`` on CPU)."""
    factor, info = torch.linalg.cholesky_ex(system)
    if bool(info.any()):  # numerically indefinite: fall back to a general solve
        return torch.linalg.solve(system, rhs)
    half = torch.linalg.solve_triangular(factor, rhs, upper=False)
    return torch.linalg.solve_triangular(factor.mT, half, upper=True)


class _Side:
    """One side's rows as solve batches: ``(rows, columns)`` with padded columns pointing at the zero
    row past the fixed matrix, and at most ``budget`` entries (or rows x factors) per batch."""

    def __init__(self, padded: PaddedRows, n_fixed: int, budget: int, factors: int) -> None:
        self.counts, self.owners = padded.counts, padded.owners
        self.batches: list[tuple[torch.Tensor, torch.Tensor]] = []
        for chunk in padded.chunks:
            cols = torch.where(chunk.mask > 0, chunk.cols, n_fixed)
            step = max(1, budget // max(cols.shape[1], factors))
            for start in range(0, len(chunk.rows), step):
                self.batches.append((chunk.rows[start : start + step], cols[start : start + step]))


class _SparseSide:
    """One side's interactions as a sparse CSR pattern over this rank's rows (the others left empty), for
    the conjugate-gradient solver: all rows step together through two sparse products."""

    def __init__(
        self, matrix: sp.csr_matrix, device: torch.device, dtype: torch.dtype, part: tuple[int, int]
    ) -> None:
        counts = np.diff(matrix.indptr)
        mine, self.owners = deal_rows(counts, part, device)
        if self.owners is not None:  # keep only this rank's rows
            keep = np.zeros(len(counts), np.float32)
            keep[mine] = 1.0
            matrix = sp.csr_matrix(sp.diags(keep) @ matrix)
            matrix.eliminate_zeros()
        self._shape = matrix.shape
        self.counts = torch.as_tensor(counts, device=device)
        self.active = torch.as_tensor(np.diff(matrix.indptr) > 0, device=device)
        self._crow = torch.as_tensor(matrix.indptr, dtype=torch.long, device=device)
        self._cols = torch.as_tensor(matrix.indices, dtype=torch.long, device=device)
        self._ones = self._pattern(torch.ones(len(self._cols), dtype=dtype, device=device))

    def _pattern(self, values: torch.Tensor) -> torch.Tensor:
        with warnings.catch_warnings():  # torch's one-time notice that sparse CSR is in beta
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(
                self._crow, self._cols, values, size=self._shape, check_invariants=False
            )

    def times(self, fixed: torch.Tensor) -> torch.Tensor:
        """``X^T 1`` of every row: the sum of the fixed rows it interacted with."""
        return self._ones @ fixed

    def gram_times(self, vectors: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        """``X^T X v`` of every row ``v``: its interactions' scores ``x_i . v``, then their weighted sum."""
        scores = torch.sparse.sampled_addmm(self._ones, vectors, fixed.T, beta=0.0)
        return self._pattern(scores.values()) @ fixed
