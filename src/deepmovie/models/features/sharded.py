"""Row-wise sharded embedding tables (model parallel, as DLRM does for tables too big for one device).

All the tables of a :class:`~deepmovie.models.features.fields.TableLayout` form one global row space;
:meth:`TableLayout.row_ranges` cuts it into one contiguous range per rank, and each rank stores only
its range. A lookup is two exchanges: every rank sends the distinct ids it needs to their owners
(``all_to_all`` of ids), the owners gather the rows and send them back (``all_to_all`` of rows). The
second exchange is autograd-aware (``torch.distributed.nn.functional.all_to_all_single``, which gloo
supports on the CPU), so the backward pass sends each row's gradient back to its owner, where it
lands as a sparse gradient of the local shard. A shard is updated by its owner alone: its parameter
is ``model_parallel`` and stays out of the data-parallel all-reduce.

TorchRec (1.9.2) was not used: its wheel requires ``fbgemm-gpu`` (CUDA kernels built against matching
torch releases) and pins ``torchmetrics==1.0.3``, so it does not install on this CPU build of torch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn

from deepmovie.engine import distributed


class RowShardedEmbedding(torch.nn.Module):
    """This rank's rows ``[start, stop)`` of a ``(total_rows, dim)`` table; lookups take global rows."""

    model_parallel = True

    def __init__(self, full: torch.Tensor, ranges: list[tuple[int, int]], sparse: bool = True) -> None:
        """``full``: the whole initial table (every rank builds the same one from the seed, so a
        sharded run starts where a single-process run does); only this rank's range is kept."""
        super().__init__()
        self.ranges = ranges
        self.rank = distributed.rank() if len(ranges) > 1 else 0
        self.start, self.stop = ranges[self.rank]
        self.total_rows = full.shape[0]
        self.sparse = sparse
        self.weight = torch.nn.Parameter(full[self.start : self.stop].detach().clone())
        self.register_buffer("bounds", torch.tensor([b for _, b in ranges]), persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows of global ids of any shape: ``(*ids.shape, dim)``."""
        if len(self.ranges) == 1:
            return torch.nn.functional.embedding(ids, self.weight, sparse=self.sparse)
        distinct, inverse = torch.unique(ids.reshape(-1), return_inverse=True)  # sorted: grouped by owner
        owner = torch.bucketize(distinct, self.bounds, right=True)
        send = torch.bincount(owner, minlength=len(self.ranges))
        recv = torch.empty_like(send)
        dist.all_to_all_single(recv, send)
        send_sizes, recv_sizes = send.tolist(), recv.tolist()
        wanted = distinct.new_empty(sum(recv_sizes))
        dist.all_to_all_single(wanted, distinct, recv_sizes, send_sizes)
        rows = torch.nn.functional.embedding(wanted - self.start, self.weight, sparse=self.sparse)
        out = rows.new_empty(len(distinct), self.weight.shape[1])
        got = dist_nn.all_to_all_single(out, rows, send_sizes, recv_sizes)
        return got[inverse].view(*ids.shape, self.weight.shape[1])

    def gather(self, local: torch.Tensor) -> torch.Tensor:
        """The whole table from every rank's shard (a collective): what checkpoints and model.pt hold."""
        longest = max(b - a for a, b in self.ranges)
        padded = local.new_zeros(longest, local.shape[1])
        padded[: len(local)] = local
        gathered = local.new_empty(len(self.ranges) * longest, local.shape[1])
        dist.all_gather_single(gathered, padded)
        parts = [gathered[r * longest : r * longest + b - a] for r, (a, b) in enumerate(self.ranges)]
        return torch.cat(parts)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        """Accept the whole table (a file written by rank 0, or an unsharded run) and keep this
        rank's rows; a shard of the right size loads as it is."""
        key = prefix + "weight"
        whole = state_dict.get(key)
        if whole is not None and whole.shape[0] == self.total_rows != self.weight.shape[0]:
            state_dict[key] = whole[self.start : self.stop]
        super()._load_from_state_dict(state_dict, prefix, *args)
