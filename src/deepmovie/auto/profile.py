"""What ``deepmovie auto`` knows of a data set before it picks models: sizes, scale and side information.

Candidates and their search spaces are chosen from this profile alone (no data set names), so a new
rating file gets the same treatment as MovieLens.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from deepmovie.data.dataset import Dataset
from deepmovie.splits import Split

Task = Literal["rating", "ranking"]


@dataclass(frozen=True)
class DataProfile:
    rows: int  # training rows (the part every trial fits)
    users: int
    items: int
    density: float
    low: float  # the rating scale
    high: float
    step: float
    distinct_ratings: int
    mean_per_user: float
    mean_per_item: float
    item_documents: bool  # titles/genres/plots: what text and feature models read
    user_features: bool
    timestamps: bool

    @property
    def implicit(self) -> bool:
        """Only one or two rating values (0/1 clicks, 'liked'): nothing to regress, only to rank."""
        return self.distinct_ratings <= 2

    @property
    def task(self) -> Task:
        return "ranking" if self.implicit else "rating"

    @property
    def span(self) -> float:
        """The width of the scale relative to 1..5: SGD steps scale with the size of the errors."""
        return max(self.high - self.low, self.step) / 4.0

    def describe(self) -> str:
        side = [
            name
            for name, present in (
                ("item documents", self.item_documents),
                ("user features", self.user_features),
                ("timestamps", self.timestamps),
            )
            if present
        ]
        return (
            f"{self.rows:,} training ratings, {self.users:,} users, {self.items:,} items, "
            f"density {self.density:.3%}, scale {self.low:g}..{self.high:g} step {self.step:g} "
            f"({self.distinct_ratings} values), {self.mean_per_user:.1f} ratings per user, "
            f"{self.mean_per_item:.1f} per item; side information: {', '.join(side) or 'none'}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "implicit": self.implicit, "task": self.task}


def profile(dataset: Dataset, split: Split) -> DataProfile:
    """The profile of ``split``'s training rows within ``dataset``."""
    train = split.train
    users = int(np.count_nonzero(np.bincount(train.users, minlength=dataset.n_users)))
    items = int(np.count_nonzero(np.bincount(train.items, minlength=dataset.n_items)))
    documents = dataset.items is not None and any(dataset.items.documents)
    return DataProfile(
        rows=len(train),
        users=dataset.n_users,
        items=dataset.n_items,
        density=len(train) / max(dataset.n_users * dataset.n_items, 1),
        low=dataset.scale.low,
        high=dataset.scale.high,
        step=dataset.scale.step,
        distinct_ratings=len(np.unique(train.ratings)),
        mean_per_user=len(train) / max(users, 1),
        mean_per_item=len(train) / max(items, 1),
        item_documents=documents,
        user_features=dataset.users is not None and bool(dataset.users.fields),
        timestamps=train.timestamps is not None,
    )
