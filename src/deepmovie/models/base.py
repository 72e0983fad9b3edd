"""The contract every model family fulfils, so one trainer, evaluator and CLI serve them all.

A model is a ``torch.nn.Module`` with a Pydantic ``Params`` class (its whole configuration), built
from ``(params, info)``. Training is a sequence of epochs: ``prepare`` once, then ``train_epoch``
until the trainer stops; ``predict`` scores (user, item) index pairs. Gradient-trained models get
``train_epoch`` from :class:`deepmovie.models.minibatch.MiniBatchModel`; closed-form ones (ALS)
write their own sweep.

A model's ``task`` says what its predictions are and so how it is judged: ``rating`` (a rating;
RMSE), ``like`` (the probability of a rating >= ``like_rating``; AUC) or ``implicit`` (a preference
score from binarized ratings; top-K ranking).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from deepmovie.data.interactions import Interactions, RatingScale
from deepmovie.data.side import ItemInfo, UserInfo

Task = Literal["rating", "like", "implicit"]


class ModelParams(BaseModel):
    """Settings shared by every model; each family subclasses this with its own fields."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

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

    def __init__(self, params: ModelParams, info: DataInfo) -> None:
        super().__init__()
        self.params = params
        self.info = info

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
