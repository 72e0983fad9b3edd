"""The contract every model family fulfils, so one trainer, evaluator and CLI serve them all.

A model is a ``torch.nn.Module`` with a Pydantic ``Params`` class (its whole configuration), built
from ``(params, info)``. Training is a sequence of epochs: ``prepare`` once, then ``train_epoch``
until the trainer stops; ``predict`` scores (user, item) index pairs. Gradient-trained models get
``train_epoch`` from :class:`deepmovie.models.minibatch.MiniBatchModel`; closed-form ones (ALS)
write their own sweep.

A model's ``task`` says what its predictions are and so how it is judged: ``rating`` (a rating;
RMSE), ``like`` (the probability of a rating >= ``like_rating``; AUC) or ``implicit`` (a preference
score from binarized ratings; top-K ranking).

A model also owns everything serving needs to know about it: ``score_items`` (a user's scores for
every item), ``factors`` (its ``offset + b_u + b_i + x_u . q_i`` view, where it has one),
``fold_in`` (a new user's scores from their ratings, without retraining), ``item_neighbours`` (its
item-item weights, where it has them), ``attach`` (the seen ratings, for models whose predictions
read them) and ``load_weights``. Each has a default, so serving
never looks inside a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from deepmovie.data.interactions import Interactions, RatingScale
from deepmovie.data.side import ItemInfo, UserInfo
from deepmovie.errors import DeepMovieError
from deepmovie.machine import format_size, memory_budget
from deepmovie.models.factors import Factors

Task = Literal["rating", "like", "implicit"]
VALUE_BYTES = 4  # float32
# The copies of every weight a use of the model holds, and what they are.
COPIES = {
    "train": (4, "the weights, their gradients and Adam's two moments"),
    "serve": (2, "the weights and the saved state they are loaded from"),
}


class FoldInUnsupported(DeepMovieError):
    """The model cannot place a new user without retraining."""


class ModelParams(BaseModel):
    """Settings shared by every model; each family subclasses this with its own fields."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    epochs: int = Field(20, ge=1, description="maximum number of epochs (or ALS sweeps)")
    patience: int = Field(
        5, ge=0, description="stop after this many epochs without a better valid RMSE (0: never)"
    )
    tol: float = Field(
        0.0, ge=0, description="stop when the relative parameter change of an epoch is <= tol (0: off)"
    )


@dataclass(frozen=True)
class DataInfo:
    """What a model may know about the data when it is built: sizes, scale and side information."""

    n_users: int
    n_items: int
    scale: RatingScale
    global_mean: float
    items: ItemInfo | None = None
    users: UserInfo | None = None


class Model(torch.nn.Module):
    """Base class of all rating models."""

    name: ClassVar[str]
    Params: ClassVar[type[ModelParams]] = ModelParams
    # True when the model predicts items without training ratings itself (from their content), so
    # the evaluator's bias fallback is used only for unknown users.
    scores_cold_items: ClassVar[bool] = False
    memory_limit: int | None = None  # bytes a working set may take (--max-memory); None: 80% of free

    def __init__(self, params: ModelParams, info: DataInfo) -> None:
        super().__init__()
        self.params = params
        self.info = info

    @classmethod
    def check_size(
        cls,
        params: ModelParams,
        info: DataInfo,
        *,
        use: Literal["train", "serve"] = "train",
        device: torch.device | None = None,
        max_memory: int | None = None,
    ) -> None:
        """Refuse, in one line naming both figures, a model whose weights would not fit, before any is
        allocated: it is built on PyTorch's meta device (shapes, no storage) and its parameters and
        buffers counted. ``factors=100000000`` would otherwise take tens of GB in the constructor, before
        a model's own checks (EASE's, iALS's, which size their working sets) could run."""
        try:
            with torch.device("meta"):
                shape = cls(params, info)
        except (RuntimeError, NotImplementedError):  # one that reads values as it is built (loads
            return  # pretrained weights, as the minilm encoder does) has no meta twin: it goes unchecked
        count = sum(t.numel() for t in (*shape.parameters(), *shape.buffers()))
        copies, what = COPIES[use]
        need = count * VALUE_BYTES * copies
        budget = memory_budget(device or torch.device("cpu"), max_memory)
        if budget is not None and need > budget[0]:
            limit, source = budget
            raise DeepMovieError(
                f"{cls.name}: {count:,} weights need {format_size(need)} to {use} (float32: {what}), "
                f"over the {format_size(limit)} limit ({source}); lower the model's sizes, or raise "
                "--max-memory"
            )

    def require_memory(self, need: int, what: str, hint: str = "") -> None:
        """Refuse, before allocating it, a working set over the budget (``memory_limit``: the run's
        --max-memory, set by the experiment; else 80% of the device's free memory), in one line naming
        both figures: EASE's item x item matrices, iALS's padded rows, Mult-VAE's logits."""
        self.refuse_over_budget(need, what, self.device, self.memory_limit, hint)

    @classmethod
    def refuse_over_budget(
        cls, need: int, what: str, device: torch.device, max_memory: int | None, hint: str = ""
    ) -> None:
        """``require_memory``'s check and message, for a class sizing its working set before it is built."""
        budget = memory_budget(device, max_memory)
        if budget is not None and need > budget[0]:
            limit, source = budget
            raise DeepMovieError(
                f"{cls.name}: {what} need {format_size(need)}, over the {format_size(limit)} limit "
                f"({source}){hint}"
            )

    @property
    def device(self) -> torch.device:
        tensor = next(iter(self.parameters()), None)
        if tensor is None:
            tensor = next(iter(self.buffers()), torch.empty(0))
        return tensor.device

    @property
    def task(self) -> Task:
        return "rating"

    def prepare(self, train: Interactions, seed: int) -> None:
        """Build what training needs (tensors on the device, optimizers); called once per fit."""

    def train_epoch(self, epoch: int) -> float:
        """Run one epoch (or sweep) and return the mean training loss."""
        raise NotImplementedError

    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Predicted ratings for index pairs (unclipped)."""
        raise NotImplementedError

    def score_items(self, users: torch.Tensor) -> torch.Tensor:
        """Scores of every item for each user, ``(len(users), n_items)``: what rankings sort.

        Pairs through :meth:`predict` by default; models that score a whole row at once override it.
        """
        n_items = self.info.n_items
        pairs_users = users.long().repeat_interleave(n_items)
        pairs_items = torch.arange(n_items, device=users.device).repeat(len(users))
        return self.predict(pairs_users, pairs_items).view(len(users), n_items)

    def factors(self) -> Factors | None:
        """The model as ``offset + b_u + b_i + x_u . q_i`` where it is one (None: it is not), so serving
        scores a user with one product and folds a new user in by a ridge solve."""
        return None

    def fold_in(self, items: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        """Every item's score for a new user known only by ``ratings`` of ``items`` (indices), without
        retraining: the factor view's ridge solve by default; :class:`FoldInUnsupported` without one."""
        factors = self.factors()
        if factors is None:
            raise FoldInUnsupported(
                f"cold start is not supported for model {self.name!r}: it has no user-independent way to "
                "place a new user (factor models and U-AutoRec have one); recommend for a known user"
            )
        return factors.scores(*factors.fold_in(items, ratings))

    def item_embeddings(self) -> np.ndarray | None:
        """Each item's learned vector, ``(n_items, k)``, whose cosines serve as item-item similarity
        (explanations, ``similar``) where the model has no weights of its own: the factor view's item
        factors by default; a model with item vectors but no factor view returns them itself."""
        factors = self.factors()
        return factors.item_factors if factors is not None else None

    def item_neighbours(self, items: np.ndarray, columns: np.ndarray | None = None) -> np.ndarray | None:
        """Rows of the model's own item-item weights for ``items`` (indices), ``(len(items), n_items)``,
        or only the ``columns`` asked for: how much a user's having item j adds to each item's score
        (EASE's B, item-kNN's S). Serving explains a page (10 columns) and finds similar items (every
        column) with them; None (default): the model has none."""
        return None

    def attach(self, seen: Interactions) -> None:
        """Give a trained or loaded model the ratings it may read at prediction time (AutoRec's input
        rows). Nothing by default: most models hold all they need in their weights."""

    def load_weights(self, state: dict[str, torch.Tensor], source: str) -> None:
        """Load a saved ``state_dict``; buffers sized by the data (SVD++'s rated-item index) take the
        saved size. Weights of another configuration are refused naming the first mismatch."""
        for name, buffer in list(self.named_buffers()):
            if name in state and state[name].shape != buffer.shape:
                owner, _, leaf = name.rpartition(".")
                setattr(self.get_submodule(owner), leaf, torch.empty_like(state[name]))
        try:
            self.load_state_dict(state)
        except RuntimeError as exc:
            first = str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
            message = f"{source}: does not fit this {self.name!r} configuration ({first})"
            raise DeepMovieError(message) from None

    def extra_metrics(
        self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor
    ) -> dict[str, float]:
        """Figures beyond the task's own that a family reports on held-out rows (none by default)."""
        return {}

    def training_state(self) -> dict[str, Any]:
        """Optimizer or sampler state a checkpoint needs beyond ``state_dict`` (resumable runs)."""
        return {}

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`training_state` returned."""
