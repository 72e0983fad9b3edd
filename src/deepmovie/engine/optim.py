"""Optimizers and learning-rate schedules for a module, stepped together with the gradient exchange.

Embedding tables with sparse row gradients and dense weights each get the optimizer variant that fits
them (SparseAdam for Adam's sparse side); :class:`Optimization` owns both, their schedules and the
data-parallel :class:`~deepmovie.engine.distributed.GradientSync`, so a model's loop is
``zero_grad`` / ``backward`` / ``step`` and ``end_epoch``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any, Literal, Protocol

import torch

from deepmovie.engine import distributed


class OptimizerSettings(Protocol):
    """The settings :class:`Optimization` reads (a model's Pydantic params satisfy it)."""

    optimizer: Literal["sgd", "adam", "adagrad"]
    lr: float
    momentum: float
    weight_decay: float
    lr_schedule: Literal["constant", "exponential", "cosine"]
    lr_gamma: float
    grad_clip: float
    epochs: int


class Optimization:
    """The optimizers, schedules and gradient exchange of one fit of ``module``."""

    def __init__(
        self, module: torch.nn.Module, settings: OptimizerSettings, *, fused_adam: bool = False
    ) -> None:
        self.settings = settings
        self.fused_adam = fused_adam  # torch's fused AdamW kernel: several times faster on big matrices
        self.module = module
        sparse, dense = parameter_groups(module)
        self.optimizers = self._optimizers(sparse, dense)
        self.schedulers = [s for s in (self._scheduler(o) for o in self.optimizers) if s is not None]
        # What data-parallel ranks all-reduce: every replicated parameter, in one fixed order.
        replicated = {id(t) for t in distributed.replicated(module)}
        synced = [(p, True) for p in sparse if id(p) in replicated]
        synced += [(p, False) for p in dense if id(p) in replicated]
        self.sync = distributed.GradientSync([p for p, _ in synced], [s for _, s in synced])

    @property
    def lr(self) -> float:
        """The current learning rate (schedules change it between epochs only)."""
        return self.optimizers[0].param_groups[0]["lr"]

    def zero_grad(self) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)

    def step(self) -> None:
        """Sum the gradients over data-parallel ranks, clip them, and step every optimizer."""
        self.sync()
        if self.settings.grad_clip:
            clip_gradients(self.module.parameters(), self.settings.grad_clip)
        for optimizer in self.optimizers:
            optimizer.step()

    def end_epoch(self) -> None:
        """Advance the learning-rate schedules by one epoch."""
        for scheduler in self.schedulers:
            scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizers": [o.state_dict() for o in self.optimizers],
            "schedulers": [s.state_dict() for s in self.schedulers],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for optimizer, saved in zip(self.optimizers, state.get("optimizers", []), strict=False):
            optimizer.load_state_dict(saved)
        for scheduler, saved in zip(self.schedulers, state.get("schedulers", []), strict=False):
            scheduler.load_state_dict(saved)

    def _optimizers(self, sparse: list, dense: list) -> list[torch.optim.Optimizer]:
        groups = []
        if sparse:
            if self.settings.optimizer == "adam":
                groups.append(torch.optim.SparseAdam(sparse, lr=self.settings.lr))
            else:
                groups.append(self._dense(sparse, weight_decay=0.0))
        if dense:
            groups.append(self._dense(dense, weight_decay=self.settings.weight_decay))
        return groups

    def _dense(self, params: list, weight_decay: float) -> torch.optim.Optimizer:
        s = self.settings
        if s.optimizer == "sgd":
            return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, weight_decay=weight_decay)
        if s.optimizer == "adagrad":
            return torch.optim.Adagrad(params, lr=s.lr, weight_decay=weight_decay)
        fused = {"fused": True} if self.fused_adam else {}
        return torch.optim.AdamW(params, lr=s.lr, weight_decay=weight_decay, **fused)

    def _scheduler(self, optimizer: torch.optim.Optimizer) -> Any:
        s = self.settings
        if s.lr_schedule == "exponential":
            return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=s.lr_gamma)
        if s.lr_schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=s.epochs)
        return None


def parameter_groups(module: torch.nn.Module) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    """(parameters with sparse row gradients, the others): embedding tables with ``sparse=True`` and
    sharded tables (``model_parallel``) that declare ``sparse``."""
    sparse, dense = [], []
    for child in module.modules():
        table = isinstance(child, (torch.nn.Embedding, torch.nn.EmbeddingBag))
        rows = (table or getattr(child, "model_parallel", False)) and getattr(child, "sparse", False)
        for param in child.parameters(recurse=False):
            (sparse if rows else dense).append(param)
    return sparse, dense


def clip_gradients(parameters: Iterable[torch.nn.Parameter], max_norm: float) -> None:
    """Scale all gradients so their joint norm is at most ``max_norm`` (sparse ones included)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    norms = [(g.coalesce().values() if g.is_sparse else g).norm() for g in grads]
    scale = min(1.0, max_norm / (float(torch.stack(norms).norm()) + 1e-6))
    if scale < 1.0:
        for g in grads:
            g.mul_(scale)


@contextlib.contextmanager
def intra_op_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` torch intra-op threads, then restore the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
