"""Data-parallel training under ``torchrun``: the process group, batch shards and gradient all-reduce.

``torchrun --nproc-per-node N -m deepmovie train ...`` starts N processes with ``WORLD_SIZE``, ``RANK``
and ``LOCAL_RANK`` set; :func:`start` joins them into one process group (NCCL on ``cuda:LOCAL_RANK``
when CUDA is there and the run may use it, gloo on the CPU otherwise). Every rank holds the whole
model and the whole training set; each global batch of the epoch's permutation is cut into one
contiguous shard per rank (:func:`shard`), each rank back-propagates the *sum* of its shard's losses,
and :class:`GradientSync` sums the gradients, so every rank applies the single-process step of
the whole batch and the replicas stay identical (up to floating-point summation order).

Sparse embedding gradients are coalesced and all-gathered (row indices and rows; what a batch touches,
not the table), then summed by coalescing: the exchange grows with the rows touched, never with the
table, and takes one collective per step for all tables together (per-step latency, not bandwidth,
is what costs on a CPU box). Parameters of model-parallel modules (``model_parallel = True``, e.g.
row-sharded embedding tables) are owned by one rank each and are left out.

Only rank 0 writes files or prints; the others run quiet. Without ``torchrun`` every function here is
the single-process identity, so the same code path serves both.
"""

from __future__ import annotations

import atexit
import datetime
import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist

ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK")
TIMEOUT = datetime.timedelta(minutes=int(os.environ.get("DEEPMOVIE_DIST_TIMEOUT_MIN", "30")))


def launched() -> bool:
    """Whether this process was started by ``torchrun`` (or anything that sets its variables)."""
    return all(name in os.environ for name in ENV)


def active() -> bool:
    """Whether a process group of more than one rank is running (collectives are needed)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 outside torchrun)."""
    return dist.get_rank() if active() else 0


def world_size() -> int:
    """Ranks in the group (1 outside torchrun): the number of shards of every batch."""
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0 (or a single process): the one that writes run files and prints."""
    return rank() == 0


def local_device(device: torch.device) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` under torchrun on GPUs, else ``device``."""
    if device.type == "cuda" and launched():
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


def start(device: str = "auto") -> None:
    """Join the torchrun process group; it is torn down when the process exits.

    NCCL when the run will use CUDA (``device`` auto or cuda and a GPU is there), gloo otherwise; a
    process not started by torchrun, or a group already initialised by the caller, is left as it is.
    """
    if not launched() or not dist.is_available() or dist.is_initialized():
        return
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
    atexit.register(stop)


def stop() -> None:
    """Leave the process group (a no-op when there is none)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard(rows: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous part of a global batch (sizes differ by at most one row)."""
    return rows.tensor_split(world_size())[rank()] if active() else rows


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over the ranks, in place (the epoch's loss, ALS residuals)."""
    if active():
        dist.all_reduce(tensor)
    return tensor


def broadcast_object(value: Any) -> Any:
    """Rank 0's ``value`` on every rank: decisions (early stopping) must never differ between ranks."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def replicated(module: torch.nn.Module) -> list[torch.Tensor]:
    """Parameters and floating buffers every rank holds a full copy of (model-parallel ones left out)."""
    owned = {id(p) for m in module.modules() if getattr(m, "model_parallel", False) for p in m.parameters()}
    tensors = [p for p in module.parameters() if id(p) not in owned]
    return tensors + [b for b in module.buffers() if b.is_floating_point()]


def broadcast_module(module: torch.nn.Module) -> None:
    """Start every replica from rank 0's weights (in case a rank built or resumed differently)."""
    if active():
        for tensor in replicated(module):
            dist.broadcast(tensor.data, src=0)


class GradientSync:
    """Replaces every gradient by its sum over the ranks, one collective per kind and step.

    ``parameters`` in the same order on every rank; ``sparse[k]``: parameter k gets sparse row
    gradients. Dense gradients are flattened into one all-reduce. Sparse ones are coalesced and packed,
    all of them with their row counts, into one byte buffer that is all-gathered and summed by
    coalescing: the exchange grows with the rows touched, never with the tables. The buffer's capacity
    is the largest payload seen so far (plus a quarter); a step whose payload exceeds it on some rank
    sends a second, larger round, and every rank, seeing every rank's size, takes the same branch. A
    parameter no rank computed a gradient for keeps ``grad = None``, as in one process (optimizers
    skip it).
    """

    def __init__(self, parameters: Sequence[torch.nn.Parameter], sparse: Sequence[bool]) -> None:
        self.dense = [p for p, s in zip(parameters, sparse, strict=True) if not s]
        self.sparse = [p for p, s in zip(parameters, sparse, strict=True) if s]
        self.capacity = 0  # bytes of a rank's sparse payload

    def __call__(self) -> None:
        if not active():
            return
        if self.dense:
            self._reduce_dense()
        if self.sparse:
            self._reduce_sparse()

    def _reduce_dense(self) -> None:
        parameters = self.dense
        device = parameters[0].device
        parts = []
        for p in parameters:
            grad = p.grad.to_dense() if p.grad is not None and p.grad.is_sparse else p.grad
            parts.append(grad.reshape(-1) if grad is not None else torch.zeros(p.numel(), device=device))
        flags = torch.tensor([float(p.grad is not None) for p in parameters], device=device)
        flat = torch.cat([*[t.to(torch.float32) for t in parts], flags])
        dist.all_reduce(flat)
        offset = 0
        for p, seen in zip(parameters, flat[-len(parameters) :].tolist(), strict=True):
            n = p.numel()
            p.grad = flat[offset : offset + n].view_as(p).to(p.dtype) if seen else None
            offset += n

    def _reduce_sparse(self) -> None:
        parameters = self.sparse
        local = [p.grad.coalesce() if p.grad is not None else None for p in parameters]
        header = [g._nnz() if g is not None else -1 for g in local]  # -1: no gradient
        pieces = [torch.tensor(header, dtype=torch.long, device=parameters[0].device)]
        for g in local:
            if g is not None:
                pieces += [g.indices()[0].contiguous(), g.values().contiguous().reshape(-1)]
        payloads = self._all_gather_bytes(torch.cat([t.view(torch.uint8) for t in pieces]))
        received: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in parameters]
        for data in payloads:
            counts = _typed(data[: 8 * len(parameters)], torch.long).tolist()
            offset = 8 * len(parameters)
            for k, (p, count) in enumerate(zip(parameters, counts, strict=True)):
                if count < 0:
                    continue
                width = p.numel() // max(p.shape[0], 1)
                value_bytes = count * width * p.element_size()
                index = _typed(data[offset : offset + 8 * count], torch.long)
                offset += 8 * count
                rows = _typed(data[offset : offset + value_bytes], p.dtype).view(count, *p.shape[1:])
                offset += value_bytes
                received[k].append((index, rows))
        for p, parts in zip(parameters, received, strict=True):
            if not parts:
                p.grad = None
                continue
            index = torch.cat([i for i, _ in parts])[None]
            p.grad = torch.sparse_coo_tensor(index, torch.cat([r for _, r in parts]), p.shape).coalesce()

    def _all_gather_bytes(self, payload: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's payload (sizes may differ), in rank order: one all-gather in the usual case."""
        world = dist.get_world_size()
        size = len(payload)
        for _ in range(2):
            capacity = self.capacity
            buffer = torch.zeros(8 + capacity, dtype=torch.uint8, device=payload.device)
            buffer[:8] = torch.tensor([size], dtype=torch.long).view(torch.uint8)
            if size <= capacity:
                buffer[8 : 8 + size] = payload
            gathered = torch.empty(world * (8 + capacity), dtype=torch.uint8, device=payload.device)
            dist.all_gather_single(gathered, buffer)
            rows = gathered.view(world, 8 + capacity)
            sizes = _typed(rows[:, :8], torch.long).reshape(-1).tolist()
            if max(sizes) <= capacity:
                return [rows[r, 8 : 8 + n] for r, n in enumerate(sizes)]
            self.capacity = max(sizes) + max(sizes) // 4  # the same on every rank: all saw all sizes
        raise AssertionError("unreachable: the second round's capacity fits every payload")


def _typed(data: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Bytes of a received buffer as ``dtype`` (copied: a slice may sit at an unaligned offset)."""
    return data.clone().view(dtype)


def gather_state(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with each model-parallel shard replaced by the whole tensor: what files hold, so a
    checkpoint or ``model.pt`` loads anywhere (every rank must call this: it is a collective)."""
    sharded = [(name, m) for name, m in module.named_modules() if getattr(m, "model_parallel", False)]
    if not sharded or not active():
        return state
    whole = dict(state)
    for name, owner in sharded:
        key = f"{name}.weight" if name else "weight"
        whole[key] = owner.gather(state[key])
    return whole


def all_gather_rows(matrix: torch.Tensor, owners: Sequence[torch.Tensor]) -> None:
    """Fill ``matrix[owners[r]]`` on every rank with rank r's rows (ALS sweeps sharded by row)."""
    longest = max(len(rows) for rows in owners)
    local = matrix.new_zeros(longest, *matrix.shape[1:])
    mine = owners[rank()]
    local[: len(mine)] = matrix[mine]
    gathered = matrix.new_empty(world_size() * longest, *matrix.shape[1:])
    dist.all_gather_single(gathered, local)
    for r, rows in enumerate(owners):
        matrix[rows] = gathered[r * longest : r * longest + len(rows)]
