"""Item-based k-nearest neighbours (Sarwar et al., WWW 2001), the "ItemKNN" baseline of Dacrema et
al., "Are we really making much progress?" (RecSys 2019).

Items are similar when the same users interacted with them: the cosine of two item columns of the
0/1 interaction matrix, shrunk toward zero when they share few users,
``s_ij = |U_i & U_j| / (sqrt(|U_i| |U_j|) + shrink)``. Each item keeps only its ``neighbours`` most
similar items (pruning the columns of ``S``, as Dacrema et al.'s implementation does), and a user's
score for item ``j`` sums the similarities of ``j``'s neighbours they interacted with:
``scores = x_u S``. The similarities are built a block of items at a time from
sparse products, so no dense item x item matrix is held for a large catalogue, and kept sparse.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field

from deepmovie.data.interactions import Interactions
from deepmovie.models.base import DataInfo
from deepmovie.models.ranking.base import RankingModel, RankingParams
from deepmovie.models.registry import MODELS

BLOCK = 1 << 24  # item x item similarities held at once while neighbours are picked (64 MB float32)


class ItemKNNParams(RankingParams):
    neighbours: int = Field(
        100, ge=1, description="k: the most similar items each item keeps (its neighbourhood)"
    )
    shrink: float = Field(
        10.0,
        ge=0,
        description="added to the cosine's denominator: pulls similarities of items sharing few "
        "users toward 0",
    )
    normalize: bool = Field(
        False,
        description="scale each item's kept neighbour similarities to sum to 1 (Sarwar's weighted "
        "average over the neighbourhood instead of a sum; lower NDCG on MovieLens)",
    )
    tol: float = Field(0.0, ge=0, le=0, description="closed form: one epoch fits, no tolerance stop")


@MODELS.register("item-knn")
class ItemKNN(RankingModel):
    """``scores = x_u S`` with ``S`` the shrunk cosine of item columns, pruned to ``neighbours`` per item.

    ``S`` is stored transposed as CSR buffers (row ``j``: the neighbours of item ``j`` and their
    similarities), so a batch of users is scored by one sparse x dense product."""

    Params = ItemKNNParams
    params: ItemKNNParams

    def __init__(self, params: ItemKNNParams, info: DataInfo) -> None:
        super().__init__(params, info)
        # Sized by the data: a loaded model takes the saved sizes (base load_weights).
        self.register_buffer("neighbour_indptr", torch.zeros(info.n_items + 1, dtype=torch.long))
        self.register_buffer("neighbour_indices", torch.zeros(0, dtype=torch.long))
        self.register_buffer("neighbour_values", torch.zeros(0))

    def prepare(self, train: Interactions, seed: int) -> None:
        self.attach(train)
        self._train = self.history

    def train_epoch(self, epoch: int) -> float:
        """Build the neighbourhoods (epoch 1; later epochs keep them). Returns 0.0: the similarities
        are computed, not fitted, so there is no training error."""
        if epoch == 1 or self.neighbour_indices.numel() == 0:
            self.fit()
        return 0.0

    def fit(self) -> None:
        matrix, device = self._train, self.device
        n, k = self.info.n_items, min(self.params.neighbours, max(self.info.n_items - 1, 1))
        by_item = sp.csr_matrix(matrix.T)  # items x users
        norms = torch.as_tensor(np.sqrt(np.diff(by_item.indptr)), dtype=torch.float32, device=device)
        step = max(1, BLOCK // max(n, 1))
        rows, cols, values = [], [], []
        for start in range(0, n, step):
            stop = min(n, start + step)
            # Co-occurrence counts of items start..stop (whose neighbours are picked) with every item,
            # dense only for this block; the shrunk cosine is computed in place.
            similarity = torch.as_tensor((by_item[start:stop] @ matrix).toarray(), device=device)
            similarity.div_((norms[start:stop, None] * norms[None, :] + self.params.shrink).clamp_min_(1e-12))
            local = torch.arange(stop - start, device=device)
            similarity[local, local + start] = 0.0  # an item is not its own neighbour
            top, index = similarity.topk(k, dim=1)
            del similarity
            index, order = index.sort(dim=1)  # CSR wants each row's columns in order
            top = top.gather(1, order)
            kept = top > 0  # items sharing no user are no neighbours
            rows.append((local[:, None] + start).expand(-1, k)[kept])
            cols.append(index[kept])
            values.append(top[kept])
        row, col, value = torch.cat(rows), torch.cat(cols), torch.cat(values)
        if self.params.normalize:
            sums = torch.zeros(n, device=device).index_add_(0, row, value)
            value = value / sums[row]
        counts = torch.bincount(row, minlength=n)
        self.neighbour_indptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        self.neighbour_indices = col
        self.neighbour_values = value

    def similarity_t(self) -> torch.Tensor:
        """``S^T`` as a sparse CSR tensor on the model's device (row ``j``: item ``j``'s neighbours)."""
        n = self.info.n_items
        with warnings.catch_warnings():  # "sparse CSR support is in beta": sparse @ dense is not
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(
                self.neighbour_indptr, self.neighbour_indices, self.neighbour_values, (n, n)
            )

    def scores(self, rows: torch.Tensor) -> torch.Tensor:
        """``rows @ S`` for dense 0/1 history rows, as ``(S^T @ rows^T)^T``."""
        return (self.similarity_t() @ rows.T.contiguous()).T

    def item_neighbours(self, items: np.ndarray, columns: np.ndarray | None = None) -> np.ndarray:
        """Rows of ``S`` (or their ``columns``): how much having item j adds to each item (j among that
        item's neighbours)."""
        rows = self._by_neighbour()[np.asarray(items)]
        return (rows if columns is None else rows[:, np.asarray(columns)]).toarray()

    def _by_neighbour(self) -> sp.csr_matrix:
        """``S^T`` as SciPy CSR (row j: the items j adds to), built once per set of weights: serving
        asks for a few of its rows per request."""
        key = (self.neighbour_values.data_ptr(), self.neighbour_values.numel())
        if getattr(self, "_by_neighbour_key", None) != key:
            n = self.info.n_items
            by_scored = sp.csr_matrix(
                (
                    self.neighbour_values.cpu().numpy(),
                    self.neighbour_indices.cpu().numpy(),
                    self.neighbour_indptr.cpu().numpy(),
                ),
                shape=(n, n),
            )
            self._by_neighbour_cache, self._by_neighbour_key = sp.csr_matrix(by_scored.T), key
        return self._by_neighbour_cache

    def score_items(self, users: torch.Tensor) -> torch.Tensor:
        return self.scores(self.history_rows(users))

    def fold_in(self, items: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        return self.scores(self.given_row(items, ratings))[0].cpu().numpy()
