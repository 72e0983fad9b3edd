"""Rows of a sparse rating matrix on demand: the autoencoders' batches, straight from a host CSR.

A batch is a handful of rows; it goes to the device as a torch CSR block (with its transpose, for the
weight gradient), as (row, column, value) entries, or as a dense block for the reference form. The
whole matrix never becomes dense.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch


class SparseRows:
    """A CSR matrix kept on the host that hands out any rows as sparse or dense blocks on a device."""

    def __init__(self, matrix: sp.csr_matrix, device: torch.device) -> None:
        matrix = sp.csr_matrix(matrix, dtype=np.float32)
        matrix.sum_duplicates()
        matrix.sort_indices()
        self.matrix = matrix
        self.n_rows, self.n_cols = matrix.shape
        self.device = device

    @property
    def nnz(self) -> int:
        return self.matrix.nnz

    def count(self, rows: torch.Tensor) -> int:
        """Stored entries in ``rows``, from the row pointers alone."""
        return int(np.diff(self.matrix.indptr)[rows.cpu().numpy()].sum())

    def block(self, rows: torch.Tensor) -> sp.csr_matrix:
        return self.matrix[rows.cpu().numpy()]

    def entries(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The stored entries of ``rows`` as (position in ``rows``, column, value) on the device."""
        return _entries(self.block(rows), self.device)

    def dense(self, rows: torch.Tensor) -> torch.Tensor:
        """``rows`` as a dense ``len(rows) x n_cols`` block, zeros where unobserved (O(rows x n))."""
        local, cols, values = self.entries(rows)
        block = torch.zeros(len(rows), self.n_cols, device=self.device)
        block[local, cols] = values
        return block

    def sparse(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
        """``rows`` as a torch CSR block, its transpose (for the weight gradient) and its entries."""
        block = self.block(rows)
        return (
            _torch_csr(block, self.device),
            _torch_csr(block.T.tocsr(), self.device),
            _entries(block, self.device),
        )


def _entries(block: sp.csr_matrix, device: torch.device) -> tuple[torch.Tensor, ...]:
    local = np.repeat(np.arange(block.shape[0]), np.diff(block.indptr))
    return (
        torch.as_tensor(local, device=device).long(),
        torch.as_tensor(block.indices, device=device).long(),
        torch.as_tensor(block.data, device=device).float(),
    )


def _torch_csr(block: sp.csr_matrix, device: torch.device) -> torch.Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the two products used here are not
        warnings.simplefilter("ignore", UserWarning)
        return _csr_tensor(block, device)


def _csr_tensor(block: sp.csr_matrix, device: torch.device) -> torch.Tensor:
    return torch.sparse_csr_tensor(
        torch.as_tensor(block.indptr.astype(np.int64)),
        torch.as_tensor(block.indices.astype(np.int64)),
        torch.as_tensor(block.data, dtype=torch.float32),
        block.shape,
    ).to(device)


class SparseTimesDense(torch.autograd.Function):
    """``a @ weight`` for a sparse CSR ``a``; the backward uses ``a``'s transpose, built as CSR too."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, a: torch.Tensor, a_t: torch.Tensor) -> torch.Tensor:
        ctx.a_t = a_t
        return a @ weight

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return ctx.a_t @ grad, None, None
