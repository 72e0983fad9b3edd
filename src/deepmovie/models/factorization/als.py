"""Batched closed-form ridge solves for alternating least squares.

Each row's update ``x = (Y_r^T Y_r + lambda I)^-1 (Y_r^T r + lambda c)`` depends only on the rows of the
fixed factor matrix it rated. Rows are sorted by rating count and cut into chunks of similar length,
padded to that length, so a whole chunk is one ``bmm`` plus one batched Cholesky solve: no Python loop
over users or items, and memory bounded by the chunk size.

Under ``torchrun`` the rows are dealt to the ranks in turn along the count order (so every rank gets
a similar share of long and short rows); each rank solves its own and the solutions are all-gathered,
so every rank ends the sweep with the whole factor matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from deepmovie.engine import distributed

PAD_RATIO = 0.7


@dataclass
class PaddedChunk:
    rows: torch.Tensor  # (B,) which rows of the solved matrix
    cols: torch.Tensor  # (B, L) indices into the fixed matrix (0 where padded)
    values: torch.Tensor  # (B, L) targets (0 where padded)
    mask: torch.Tensor  # (B, L) 1.0 where a real rating


@dataclass
class PaddedRows:
    """The rows of a sparse matrix grouped by length and padded, ready for batched solves."""

    chunks: list[PaddedChunk]
    counts: torch.Tensor  # ratings per row
    n_rows: int
    owners: list[torch.Tensor] | None = None  # rows each rank solves, when the sweep is sharded

    @classmethod
    def from_csr(
        cls,
        matrix: sp.csr_matrix,
        values: np.ndarray,
        device: torch.device,
        budget: int = 1 << 20,
        part: tuple[int, int] = (0, 1),
    ) -> PaddedRows:
        """``values`` are the targets in ``matrix.data`` order; ``budget`` bounds B x L per chunk;
        ``part`` = (rank, world size) keeps this rank's share of the rows."""
        counts = np.diff(matrix.indptr)
        order, owners = deal_rows(counts, part, device)
        indptr = torch.as_tensor(matrix.indptr, dtype=torch.long)
        indices = torch.as_tensor(matrix.indices, dtype=torch.long)
        targets = torch.as_tensor(values, dtype=torch.float32)
        counts_t = torch.as_tensor(counts, dtype=torch.long)
        chunks = []
        start = 0
        sorted_counts = counts[order]
        while start < len(order):
            length = int(sorted_counts[start])
            # Rows in a chunk are at least PAD_RATIO as long as its longest: padding stays bounded.
            similar = int(np.searchsorted(-sorted_counts, -PAD_RATIO * length, side="right")) - start
            size = max(1, min(budget // length, similar))
            rows = torch.as_tensor(order[start : start + size], dtype=torch.long)
            offsets = indptr[rows, None] + torch.arange(length)
            mask = torch.arange(length) < counts_t[rows, None]
            offsets = torch.where(mask, offsets, 0)
            chunks.append(
                PaddedChunk(
                    rows.to(device),
                    indices[offsets].to(device),
                    (targets[offsets] * mask).to(device),
                    mask.float().to(device),
                )
            )
            start += size
        return cls(chunks, counts_t.to(device), matrix.shape[0], owners)


def deal_rows(
    counts: np.ndarray, part: tuple[int, int], device: torch.device
) -> tuple[np.ndarray, list[torch.Tensor] | None]:
    """(this rank's non-empty rows, longest first; every rank's rows, or None unsharded): rows are dealt
    in turn along the count order, so every rank gets a similar share of long and short rows."""
    order = np.argsort(-counts, kind="stable")
    order = order[counts[order] > 0]
    rank, world = part
    owners = None
    if world > 1:
        owners = [torch.as_tensor(order[r::world], device=device) for r in range(world)]
    return order[rank::world], owners


def solve_rows(
    padded: PaddedRows,
    fixed: torch.Tensor,
    out: torch.Tensor,
    reg: float,
    center: torch.Tensor | None = None,
    reg_by_count: bool = False,
    fixed_bias: torch.Tensor | None = None,
    out_bias: torch.Tensor | None = None,
    reg_bias: float = 0.0,
    bias_center: torch.Tensor | None = None,
) -> float:
    """Overwrite ``out`` with the ridge solution of every row; rows with no rating get ``center`` (or 0).

    Returns the sum of squared residuals of the fitted ratings (the training loss, for free).

    ``center`` is the prior mean the ridge pulls toward (the hybrid's encoder output); with
    ``reg_by_count`` the ridge weight is ``reg * n_ratings`` (ALS-WR). Biased ALS: ``fixed_bias`` (the
    fixed side's biases) is taken off each rating, and ``out_bias`` is solved with the vector as one
    more column of ones, with ridge weight ``reg_bias`` (scaled by the count as ``reg`` is), pulled
    toward ``bias_center`` (the hybrid's text-predicted bias) instead of 0 when one is given.
    """
    k = fixed.shape[1]
    squared_error = torch.zeros((), device=fixed.device, dtype=torch.float64)
    if center is None:
        out.zero_()
    else:
        out.copy_(center)
    if out_bias is not None:
        if bias_center is None:
            out_bias.zero_()
        else:
            out_bias.copy_(bias_center)
    for chunk in padded.chunks:
        mask = chunk.mask.to(fixed.dtype)
        values = chunk.values.to(fixed.dtype)
        if fixed_bias is not None:
            values = values - fixed_bias[chunk.cols] * mask
        gathered = fixed[chunk.cols] * mask[..., None]  # (B, L, k)
        if out_bias is not None:
            gathered = torch.cat([gathered, mask[..., None]], -1)  # (B, L, k + 1)
        gram = torch.bmm(gathered.transpose(1, 2), gathered)  # (B, k [+ 1], k [+ 1])
        rhs = torch.bmm(gathered.transpose(1, 2), values[..., None])[..., 0]  # (B, k [+ 1])
        count = padded.counts[chunk.rows].to(fixed.dtype) if reg_by_count else torch.ones_like(gram[:, 0, 0])
        weight = reg * count  # the vector's ridge, and the prior's pull
        diagonal = gram.diagonal(dim1=1, dim2=2)
        diagonal[:, :k] += weight[:, None]
        if out_bias is not None:
            diagonal[:, k] += reg_bias * count
        if center is not None:
            rhs[:, :k] += weight[:, None] * center[chunk.rows]
        if bias_center is not None:
            rhs[:, k] += reg_bias * count * bias_center[chunk.rows]
        factor, info = torch.linalg.cholesky_ex(gram)
        if bool(info.any()):  # numerically indefinite: fall back to a general solve
            solution = torch.linalg.solve(gram, rhs)
        else:
            solution = torch.cholesky_solve(rhs[..., None], factor)[..., 0]
        out[chunk.rows] = solution[:, :k]
        if out_bias is not None:
            out_bias[chunk.rows] = solution[:, k]
        residual = values - torch.bmm(gathered, solution[..., None])[..., 0]
        squared_error += (residual * residual).sum()
    if padded.owners is not None:
        distributed.all_gather_rows(out, padded.owners)
        if out_bias is not None:
            distributed.all_gather_rows(out_bias[:, None], padded.owners)
    return float(distributed.all_reduce_sum(squared_error))
