"""The base class of every gradient-trained model: shuffled mini-batches over device tensors.

Training data lives on the device as three tensors; an epoch is one seeded permutation sliced into
batches, so there is no per-sample ``Dataset.__getitem__`` anywhere. The objective follows the
lecture's mini-batch SGD: the *sum* of per-rating losses over the batch (plus L2 on the rows the
batch touches), so a learning rate means what it means for per-sample SGD (Surprise, cornac).

The optimizers, schedules and the gradient exchange are the engine's (:mod:`deepmovie.engine`); a
model writes its maths (``batch_loss``, optionally a fused ``sgd_step``). Under ``torchrun`` each
rank trains on its shard of every global batch and the summed gradients are all-reduced, so
``batch_size`` stays the global batch and a run matches the single-process one. The fused SGD step
writes into the tables directly, with no gradient to all-reduce, so data-parallel runs take the
autograd path (the same arithmetic).
"""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from tqdm.auto import tqdm

from deepmovie.data.interactions import Interactions
from deepmovie.engine import distributed
from deepmovie.engine.optim import Optimization, intra_op_threads
from deepmovie.models.base import Model, ModelParams

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
    # Dense weights through torch's fused AdamW kernel (worth it for big dense matrices).
    fused_adam: ClassVar[bool] = False

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
        """The engine's optimizers for this fit, and the seed every epoch's order derives from."""
        self._seed = seed
        self.optimization = Optimization(self, self.params, fused_adam=self.fused_adam)

    def epoch_generator(self, epoch: int) -> torch.Generator:
        """Randomness of one epoch, seeded by (seed, epoch), so a resumed run replays it."""
        return torch.Generator().manual_seed(self._seed * 1_000_003 + epoch)

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The row order of an epoch: a seeded permutation of the training ratings."""
        return torch.randperm(len(self._ratings), generator=self.epoch_generator(epoch)).to(self.device)

    def train_epoch(self, epoch: int) -> float:
        order = self.epoch_order(epoch)
        fused = self._fused_sgd()
        compiled = self.compiled_sgd_epoch(order, self.optimization.lr) if fused else None
        if compiled is not None:
            self.optimization.end_epoch()
            return compiled / max(len(order), 1)
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
        lr = self.optimization.lr
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
                self.optimization.zero_grad()
                with autocast:
                    objective, squared_error = self._loss(users, items, ratings)
                objective.backward()
                self.optimization.step()
                total += squared_error.detach()
        bar.close()
        self.optimization.end_epoch()
        return float(distributed.all_reduce_sum(total)) / max(len(order), 1)

    def training_rows(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(users, items, ratings) of training rows by position, ids widened to int64."""
        return self._users[rows].long(), self._items[rows].long(), self._ratings[rows]

    def sgd_step(
        self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor, lr: float
    ) -> torch.Tensor:
        """One plain-SGD step from the closed-form gradient of ``batch_loss``; returns the squared error.

        Models whose gradient is a few gathers and ``index_add_`` override this: several times faster
        than autograd for embedding models, and the same arithmetic.
        """
        raise NotImplementedError

    def compiled_sgd_epoch(self, order: torch.Tensor, lr: float) -> float | None:
        """The sum of squared errors of one epoch of ``sgd_step`` in ``order``, run by compiled code; None
        where the model has none (the torch loop runs). Called only when the fused step applies."""
        return None

    def _fused_sgd(self) -> bool:
        """Use ``sgd_step`` only when the class that defines the loss also defines the step: a subclass
        that changes ``batch_loss`` (SVD++ over biased MF) must not inherit a step for another loss."""
        p = self.params
        step_owner, loss_owner = _owner(type(self), "sgd_step"), _owner(type(self), "batch_loss")
        plain_sgd = p.optimizer == "sgd" and not (p.momentum or p.grad_clip or p.weight_decay or p.amp)
        owned = step_owner is loss_owner and step_owner is not MiniBatchModel
        return p.fused and plain_sgd and owned and not distributed.active()

    def training_state(self) -> dict[str, Any]:
        return self.optimization.state_dict()

    def load_training_state(self, state: dict[str, Any]) -> None:
        self.optimization.load_state_dict(state)


def _owner(cls: type, name: str) -> type:
    """The class in ``cls``'s MRO whose body defines ``name``."""
    return next(c for c in cls.__mro__ if name in vars(c))
