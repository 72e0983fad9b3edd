"""The mini-batch engine shared by every gradient-trained model.

Training data lives on the device as three tensors; an epoch is one seeded permutation sliced into
batches, so there is no per-sample ``Dataset.__getitem__`` anywhere. The objective follows the
lecture's mini-batch SGD: the *sum* of per-rating losses over the batch (plus L2 on the rows the
batch touches), so a learning rate means what it means for per-sample SGD (Surprise, cornac).

Under ``torchrun`` (:mod:`deepmovie.training.distributed`) each rank trains on its shard of every
global batch and the summed gradients are all-reduced, so ``batch_size`` stays the global batch and a
run matches the single-process one. The fused SGD step writes into the tables directly, with no
gradient to all-reduce, so data-parallel runs take the autograd path (the same arithmetic).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Literal

import torch
from pydantic import Field
from tqdm.auto import tqdm

from deepmovie.data.interactions import Interactions
from deepmovie.models.base import Model, ModelParams
from deepmovie.training import distributed

BATCH_BAR_MIN = 200  # show a per-batch bar only for epochs long enough to watch
# Our sparse gradients come from torch's own embedding backward and are well formed.
torch.sparse.check_sparse_tensor_invariants.disable()


class MiniBatchParams(ModelParams):
    """Optimizer and loop settings of every gradient-trained model."""

    batch_size: int = Field(1024, ge=1)
    optimizer: Literal["sgd", "adam", "adagrad"] = "adam"
    lr: float = Field(1e-3, gt=0)
    momentum: float = Field(0.0, ge=0, lt=1, description="SGD momentum")
    weight_decay: float = Field(0.0, ge=0, description="decoupled decay on dense (non-embedding) weights")
    lr_schedule: Literal["constant", "exponential", "cosine"] = "constant"
    lr_gamma: float = Field(0.95, gt=0, le=1, description="per-epoch factor of the exponential schedule")
    grad_clip: float = Field(0.0, ge=0, description="max gradient norm (0: off)")
    sparse: bool = Field(True, description="sparse embedding gradients: only touched rows are updated")
    amp: bool = Field(False, description="bfloat16 autocast on CUDA")
    compile: bool = Field(False, description="torch.compile the batch loss")
    fused: bool = Field(
        True, description="plain SGD: apply the model's closed-form gradient directly, without autograd"
    )


class MiniBatchModel(Model):
    """A model trained by ``batch_loss`` over shuffled mini-batches; subclasses define the loss."""

    Params = MiniBatchParams
    params: MiniBatchParams

    def batch_loss(
        self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(objective to minimise, sum of squared errors) for one batch."""
        raise NotImplementedError

    def prepare(self, train: Interactions, seed: int) -> None:
        device = self.device
        # Ids keep their stored width (int32 from the loader's memory-mapped cache, shared, not copied on
        # the CPU); each batch is widened to int64 as it is sliced.
        self._users = torch.as_tensor(train.users, device=device)
        self._items = torch.as_tensor(train.items, device=device)
        self._ratings = torch.as_tensor(train.ratings, device=device).float()
        self.start_optimization(seed)
        self._loss = torch.compile(self.batch_loss) if self.params.compile else self.batch_loss

    def start_optimization(self, seed: int) -> None:
        """Optimizers and schedulers for this fit, and the seed every epoch's order derives from."""
        self._seed = seed
        sparse, dense = self._parameter_groups()
        self._optimizers = self._make_optimizers(sparse, dense)
        self._schedulers = [self._make_scheduler(o) for o in self._optimizers]
        # What data-parallel ranks all-reduce: every replicated parameter, in one fixed order.
        replicated = {id(t) for t in distributed.replicated(self)}
        synced = [(p, True) for p in sparse if id(p) in replicated]
        synced += [(p, False) for p in dense if id(p) in replicated]
        self._sync = distributed.GradientSync([p for p, _ in synced], [s for _, s in synced])

    def epoch_generator(self, epoch: int) -> torch.Generator:
        """Randomness of one epoch, seeded by (seed, epoch), so a resumed run replays it."""
        return torch.Generator().manual_seed(self._seed * 1_000_003 + epoch)

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The row order of an epoch: a seeded permutation of the training ratings."""
        return torch.randperm(len(self._ratings), generator=self.epoch_generator(epoch)).to(self.device)

    def end_epoch(self) -> None:
        """Advance the learning-rate schedules by one epoch."""
        for scheduler in self._schedulers:
            if scheduler is not None:
                scheduler.step()

    def train_epoch(self, epoch: int) -> float:
        order = self.epoch_order(epoch)
        size = self.params.batch_size
        starts = range(0, len(order), size)
        bar = tqdm(
            starts,
            desc=f"epoch {epoch}",
            unit="batch",
            leave=False,
            disable=True if len(starts) < BATCH_BAR_MIN or not distributed.is_main() else None,
        )
        total = torch.zeros((), device=self.device, dtype=torch.float64)
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if self.params.amp and self.device.type == "cuda"
            else contextlib.nullcontext()
        )
        fused = self._fused_sgd()
        lr = self._optimizers[0].param_groups[0]["lr"]  # schedules change it between epochs only
        # The fused step is a few gathers and index_add_ over batch x factors values: too small to
        # split across threads, and on a busy machine the threads' hand-offs dominate (2M ratings of
        # biased-mf on 2 shared cores: 110 s per epoch with 2 threads, 5.7 s with 1).
        with intra_op_threads(1 if fused else torch.get_num_threads()):
            for start in bar:
                rows = distributed.shard(order[start : start + size])
                users, items, ratings = self.training_rows(rows)
                if fused:
                    with torch.no_grad():
                        total += self.sgd_step(users, items, ratings, lr)
                    continue
                for optimizer in self._optimizers:
                    optimizer.zero_grad(set_to_none=True)
                with autocast:
                    objective, squared_error = self._loss(users, items, ratings)
                objective.backward()
                self.apply_gradients()
                total += squared_error.detach()
        bar.close()
        self.end_epoch()
        return float(distributed.all_reduce_sum(total)) / max(len(order), 1)

    def training_rows(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(users, items, ratings) of training rows by position, ids widened to int64."""
        return self._users[rows].long(), self._items[rows].long(), self._ratings[rows]

    def apply_gradients(self) -> None:
        """Sum the gradients over data-parallel ranks, clip them, and step every optimizer."""
        self._sync()
        if self.params.grad_clip:
            clip_gradients(self.parameters(), self.params.grad_clip)
        for optimizer in self._optimizers:
            optimizer.step()

    def sgd_step(
        self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor, lr: float
    ) -> torch.Tensor:
        """One plain-SGD step from the closed-form gradient of ``batch_loss``; returns the squared error.

        Models whose gradient is a few gathers and ``index_add_`` override this: several times faster
        than autograd for embedding models, and the same arithmetic.
        """
        raise NotImplementedError

    def _fused_sgd(self) -> bool:
        """Use ``sgd_step`` only when the class that defines the loss also defines the step: a subclass
        that changes ``batch_loss`` (SVD++ over biased MF) must not inherit a step for another loss."""
        p = self.params
        step_owner, loss_owner = _owner(type(self), "sgd_step"), _owner(type(self), "batch_loss")
        plain_sgd = p.optimizer == "sgd" and not (p.momentum or p.grad_clip or p.weight_decay or p.amp)
        owned = step_owner is loss_owner and step_owner is not MiniBatchModel
        return p.fused and plain_sgd and owned and not distributed.active()

    def training_state(self) -> dict[str, Any]:
        return {
            "optimizers": [o.state_dict() for o in self._optimizers],
            "schedulers": [s.state_dict() for s in self._schedulers if s is not None],
        }

    def load_training_state(self, state: dict[str, Any]) -> None:
        for optimizer, saved in zip(self._optimizers, state.get("optimizers", []), strict=False):
            optimizer.load_state_dict(saved)
        schedulers = [s for s in self._schedulers if s is not None]
        for scheduler, saved in zip(schedulers, state.get("schedulers", []), strict=False):
            scheduler.load_state_dict(saved)

    def _parameter_groups(self) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
        """(parameters with sparse row gradients, the others): embedding tables with ``sparse=True``
        and sharded tables (``model_parallel``) that declare ``sparse``."""
        sparse, dense = [], []
        for module in self.modules():
            table = isinstance(module, (torch.nn.Embedding, torch.nn.EmbeddingBag))
            rows = (table or getattr(module, "model_parallel", False)) and getattr(module, "sparse", False)
            for param in module.parameters(recurse=False):
                (sparse if rows else dense).append(param)
        return sparse, dense

    def _make_optimizers(
        self, sparse: list[torch.nn.Parameter], dense: list[torch.nn.Parameter]
    ) -> list[torch.optim.Optimizer]:
        """Sparse embedding tables and dense weights each get the optimizer variant that fits them."""
        p = self.params
        groups = []
        if sparse:
            if p.optimizer == "adam":
                groups.append(torch.optim.SparseAdam(sparse, lr=p.lr))
            else:
                groups.append(self._dense_optimizer(sparse, weight_decay=0.0))
        if dense:
            groups.append(self._dense_optimizer(dense, weight_decay=p.weight_decay))
        return groups

    def _dense_optimizer(self, params: list, weight_decay: float) -> torch.optim.Optimizer:
        p = self.params
        if p.optimizer == "sgd":
            return torch.optim.SGD(params, lr=p.lr, momentum=p.momentum, weight_decay=weight_decay)
        if p.optimizer == "adagrad":
            return torch.optim.Adagrad(params, lr=p.lr, weight_decay=weight_decay)
        return torch.optim.AdamW(params, lr=p.lr, weight_decay=weight_decay)

    def _make_scheduler(self, optimizer: torch.optim.Optimizer) -> Any:
        p = self.params
        if p.lr_schedule == "exponential":
            return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=p.lr_gamma)
        if p.lr_schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=p.epochs)
        return None


@contextlib.contextmanager
def intra_op_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` torch intra-op threads, then restore the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _owner(cls: type, name: str) -> type:
    """The class in ``cls``'s MRO whose body defines ``name``."""
    return next(c for c in cls.__mro__ if name in vars(c))


def clip_gradients(parameters, max_norm: float) -> None:
    """Scale all gradients so their joint norm is at most ``max_norm`` (sparse ones included)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    norms = [(g.coalesce().values() if g.is_sparse else g).norm() for g in grads]
    scale = min(1.0, max_norm / (float(torch.stack(norms).norm()) + 1e-6))
    if scale < 1.0:
        for g in grads:
            g.mul_(scale)


def embedding(count: int, dim: int, std: float, sparse: bool) -> torch.nn.Embedding:
    """An embedding table initialised N(0, std^2)."""
    table = torch.nn.Embedding(count, dim, sparse=sparse)
    torch.nn.init.normal_(table.weight, std=std)
    return table
