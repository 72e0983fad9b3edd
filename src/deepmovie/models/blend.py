"""A blend as one model: ``intercept + sum_m weight_m * clip(member_m)``, its members inside it.

``deepmovie blend`` fits the weights on validation rows and writes the members' trained weights as a
run directory of this model, so a blend loads, recommends and serves as any run does. Each member's
prediction is clipped to the rating scale before it is weighted, as the blend's fit saw it; a pair
whose user or item had no training rating is the evaluator's fallback's, as for every model.

Trained itself (``deepmovie train blend``) it is an ensemble with *fixed* weights (an equal share
each unless given): every epoch trains each member one epoch on its own objective, and the blend's
``epochs``, ``patience`` and ``tol`` decide when all stop (the members' own are not used).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from deepmovie.data.interactions import Interactions
from deepmovie.errors import DeepMovieError
from deepmovie.models.base import DataInfo, Model, ModelParams
from deepmovie.models.registry import MODELS


class Member(BaseModel):
    """One blended model: its registered name, its parameters and its weight (None: an equal share)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: str
    params: dict[str, Any] = Field(default_factory=dict, validate_default=True)
    weight: float | None = None

    @field_validator("model")
    @classmethod
    def _registered(cls, model: str) -> str:
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r} (known: {', '.join(MODELS)})")
        return model

    @field_validator("params")
    @classmethod
    def _resolved(cls, params: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        """Validated, defaults filled in: the blend's ``config.yaml`` pins every member setting."""
        model = info.data.get("model")
        if model is None:  # its name was refused
            return params
        try:
            return MODELS.get(model).Params(**params).model_dump()
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(part) for part in error["loc"])
            raise ValueError(f"{model} parameter {field!r}: {error['msg']}") from None


def _default_members() -> list[Member]:
    """Two small, quick members: what ``deepmovie train blend`` (and the model contract) builds."""
    return [Member(model="bias"), Member(model="biased-mf", params={"factors": 8})]


class BlendParams(ModelParams):
    members: list[Member] = Field(
        default_factory=_default_members,
        min_length=1,
        validate_default=True,
        description="the blended models: [{model, params, weight}, ...]",
    )
    intercept: float = Field(0.0, description="added to the weighted sum of the members' predictions")

    @field_validator("members")
    @classmethod
    def _shares(cls, members: list[Member]) -> list[Member]:
        share = 1 / len(members)
        return [m if m.weight is not None else m.model_copy(update={"weight": share}) for m in members]


@MODELS.register("blend")
class Blend(Model):
    """``intercept + sum of weight x clipped prediction`` of member models (``deepmovie blend``'s)."""

    Params = BlendParams
    params: BlendParams

    def __init__(self, params: BlendParams, info: DataInfo) -> None:
        super().__init__(params, info)
        self.members = torch.nn.ModuleList(
            MODELS.get(m.model)(MODELS.get(m.model).Params(**m.params), info) for m in params.members
        )
        for member in self.members:
            if member.task != "rating":
                raise DeepMovieError(
                    f"blend member {member.name!r}: its task is {member.task!r}; a blend combines "
                    "rating models"
                )

    @property
    def memory_limit(self) -> int | None:
        return self.members[0].memory_limit

    @memory_limit.setter
    def memory_limit(self, limit: int | None) -> None:
        """--max-memory bounds every member's working sets."""
        for member in self.members:
            member.memory_limit = limit

    def prepare(self, train: Interactions, seed: int) -> None:
        for member in self.members:
            member.prepare(train, seed)

    def train_epoch(self, epoch: int) -> float:
        """One epoch (or sweep) of every member on its own objective; their mean training loss."""
        return sum(member.train_epoch(epoch) for member in self.members) / len(self.members)

    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self._combine(member.predict(users, items) for member in self.members)

    def score_items(self, users: torch.Tensor) -> torch.Tensor:
        return self._combine(member.score_items(users) for member in self.members)

    def fold_in(self, items: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        """Every member folds the new user in (one that cannot says so), and their scores are blended."""
        scores = (torch.as_tensor(np.asarray(m.fold_in(items, ratings))) for m in self.members)
        return self._combine(scores).numpy()

    def attach(self, seen: Interactions) -> None:
        for member in self.members:
            member.attach(seen)

    def training_state(self) -> dict[str, Any]:
        return {"members": [member.training_state() for member in self.members]}

    def load_training_state(self, state: dict[str, Any]) -> None:
        for member, own in zip(self.members, state["members"], strict=True):
            member.load_training_state(own)

    def _combine(self, predictions: Iterable[torch.Tensor]) -> torch.Tensor:
        """``intercept + sum_m weight_m * clip(prediction_m)``: each member clipped to the rating scale
        first, as the weights were fitted on them."""
        low, high = self.info.scale.low, self.info.scale.high
        total: Any = self.params.intercept
        for member, predicted in zip(self.params.members, predictions, strict=True):
            total = total + member.weight * predicted.clamp(low, high)
        return total
