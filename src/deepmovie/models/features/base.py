"""What every feature-based model shares: the feature pipeline, the embedding tables, the task head.

A subclass only defines :meth:`FeatureModel.interact`, which turns the per-field vectors and the dense
features of a batch into one score per row. The base class adds the offset (the training mean rating,
or the log-odds of a like) and picks the loss: squared error for ``task: rating``, binary cross-entropy
on ``rating >= like_rating`` for ``task: like`` (whose ``predict`` is then a probability).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
from pydantic import Field, field_validator, model_validator

from deepmovie.data.interactions import Interactions
from deepmovie.errors import DeepMovieError
from deepmovie.models.base import DataInfo
from deepmovie.models.features.fields import (
    ALL_FIELDS,
    DENSE_FEATURES,
    FeaturePipeline,
    TableLayout,
    dense_statistics,
)
from deepmovie.models.layers import Activation
from deepmovie.models.minibatch import MiniBatchModel, MiniBatchParams

FieldName = Literal["user", "item", "year", "gender", "age", "occupation", "zip_prefix", "genres", "tags"]
DenseName = Literal["popularity", "item_mean", "year", "user_mean", "activity"]


class FeatureParams(MiniBatchParams):
    """Settings of the feature pipeline and the task, shared by fm, dlrm and dcn."""

    task: Literal["rating", "like"] = Field(
        "rating", description="rating: predict the rating (MSE); like: P(rating >= like_rating) (BCE)"
    )
    like_rating: float = Field(4.0, description="ratings at or above this count as a like")
    fields: list[FieldName] | None = Field(
        None, description="categorical fields used (default: every field the dataset has)"
    )
    dense: list[DenseName] | None = Field(
        None, description="dense features used (default: all the dataset supports; [] for none)"
    )
    dim: int = Field(16, ge=1, description="embedding size of every field")
    init_std: float = Field(0.01, gt=0, description="std of the normal initialisation of embeddings")
    reg: float = Field(0.0, ge=0, description="L2 on the field vectors a batch uses (per row)")
    max_rows: int = Field(0, ge=0, description="cap on the rows of each embedding table (0: no cap)")
    hashing: bool = Field(
        False, description="over the cap: hash categories into the rows (else: keep the most frequent)"
    )
    min_count: int = Field(1, ge=1, description="training rows a category needs to get its own row")
    year_bucket: int = Field(5, ge=1, description="years per release-year bucket")
    max_tags: int = Field(16, ge=1, description="tags kept per item (in the metadata's order)")
    mean_damping: float = Field(
        5.0, ge=0, description="pseudo-ratings at the global mean in the mean features"
    )
    leave_one_out: bool = Field(
        True, description="training rows see user/item statistics without their own rating (no target leak)"
    )

    @field_validator("max_rows")
    @classmethod
    def _room_for_reserved_row(cls, value: int) -> int:
        if value == 1:
            raise ValueError("max_rows must be 0 (no cap) or >= 2: row 0 is reserved for unseen categories")
        return value

    @field_validator("fields", "dense")
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"lists a name twice: {value}")
        return value

    @model_validator(mode="after")
    def _hashing_needs_a_size(self) -> FeatureParams:
        if self.hashing and not self.max_rows:
            raise ValueError("hashing needs a table size: set max_rows (e.g. max_rows=100000)")
        return self


class NeuralFeatureParams(FeatureParams):
    """What dlrm and dcn share: defaults chosen for dlrm on the validation rows of ML-100K fold u1."""

    epochs: int = Field(40, ge=1)
    patience: int = Field(3, ge=0)
    optimizer: Literal["sgd", "adam", "adagrad"] = "adagrad"
    lr: float = Field(0.01, gt=0)
    reg: float = Field(0.3, ge=0, description="L2 on the field vectors a batch uses (per row)")
    activation: Activation = "relu"
    dropout: float = Field(0.3, ge=0, lt=1, description="dropout after each activation of the scoring MLP")


class FeatureModel(MiniBatchModel):
    """Feature pipeline + embedding tables + task head; subclasses define :meth:`interact`."""

    Params = FeatureParams
    params: FeatureParams
    table_extra_columns = 0  # fm keeps its linear weight as one more column of each table

    def __init__(self, params: FeatureParams, info: DataInfo) -> None:
        super().__init__(params, info)
        self.pipeline = FeaturePipeline(
            info, self._field_names(params, info), params.year_bucket, params.max_tags
        )
        self.layout: TableLayout = self.pipeline.layout(
            params.dim + self.table_extra_columns, params.max_rows, params.hashing
        )
        self.dense_names = self._dense_names(params, info)
        self.tables = torch.nn.ModuleDict()
        for spec in self.layout.fields:
            table = (
                torch.nn.EmbeddingBag(spec.rows, self.layout.dim, mode="sum", sparse=params.sparse)
                if spec.bag
                else torch.nn.Embedding(spec.rows, self.layout.dim, sparse=params.sparse)
            )
            torch.nn.init.normal_(table.weight, std=params.init_std)
            with torch.no_grad():
                table.weight[0] = 0.0  # the reserved row: unseen categories add nothing
            self.tables[spec.name] = table
        self.one_hot = [s for s in self.layout.fields if not s.bag]
        self.bags = [s for s in self.layout.fields if s.bag]
        # Rows of every user and item in each table, filled by prepare() from the training rows.
        n_user = sum(s.side == "user" for s in self.one_hot)
        self.register_buffer("user_rows", torch.zeros(info.n_users, n_user, dtype=torch.long))
        self.register_buffer(
            "item_rows", torch.zeros(info.n_items, len(self.one_hot) - n_user, dtype=torch.long)
        )
        for spec in self.bags:
            width = self.pipeline.codes[spec.name].codes.shape[1]
            self.register_buffer(f"bag_rows_{spec.name}", torch.zeros(info.n_items, width, dtype=torch.long))
            self.register_buffer(f"bag_weights_{spec.name}", torch.zeros(info.n_items, width))
        # Dense statistics (counts, sums) and the standardization, also from the training rows.
        for name in ("user_count", "user_sum"):
            self.register_buffer(name, torch.zeros(info.n_users))
        for name in ("item_count", "item_sum"):
            self.register_buffer(name, torch.zeros(info.n_items))
        years = torch.zeros(info.n_items)
        if info.items is not None:
            years = torch.as_tensor(info.items.years, dtype=torch.float32)
        self.register_buffer("item_year", years)
        self.register_buffer("dense_mean", torch.zeros(len(self.dense_names)))
        self.register_buffer("dense_std", torch.ones(len(self.dense_names)))
        self.register_buffer("rating_mean", torch.tensor(float(info.global_mean)))
        self.register_buffer(
            "offset", torch.tensor(float(info.global_mean) if params.task == "rating" else 0.0)
        )

    # -- configuration -------------------------------------------------------------------------

    @property
    def task(self) -> str:
        return self.params.task

    @property
    def like_rating(self) -> float:
        return self.params.like_rating

    @staticmethod
    def _field_names(params: FeatureParams, info: DataInfo) -> list[str]:
        available = FeaturePipeline.available(info)
        if params.fields is None:
            return available
        missing = [n for n in params.fields if n not in available]
        if missing:
            raise DeepMovieError(
                f"fields: {missing} not available in this dataset (it has {available}); drop them from fields"
            )
        if not params.fields:
            raise DeepMovieError("fields: name at least one categorical field, e.g. [user, item]")
        return [n for n in ALL_FIELDS if n in params.fields]

    @staticmethod
    def _dense_names(params: FeatureParams, info: DataInfo) -> list[str]:
        has_years = info.items is not None and bool((info.items.years > 0).any())
        available = [n for n in DENSE_FEATURES if n != "year" or has_years]
        if params.dense is None:
            return available
        if "year" in params.dense and not has_years:
            raise DeepMovieError("dense: 'year' needs item release years, but this dataset has none")
        return [n for n in DENSE_FEATURES if n in params.dense]

    # -- training-time preparation -------------------------------------------------------------

    def prepare(self, train: Interactions, seed: int) -> None:
        """Fit the feature pipeline on the training rows only, then the usual mini-batch setup."""
        device = self.device
        rows = self.pipeline.fit(train, self.layout, self.params.min_count)
        user_cols = [torch.as_tensor(rows[s.name]) for s in self.one_hot if s.side == "user"]
        item_cols = [torch.as_tensor(rows[s.name]) for s in self.one_hot if s.side == "item"]
        if user_cols:
            self.user_rows.copy_(torch.stack(user_cols, 1))
        if item_cols:
            self.item_rows.copy_(torch.stack(item_cols, 1))
        for spec in self.bags:
            bag = torch.as_tensor(rows[spec.name])
            present = torch.as_tensor(self.pipeline.codes[spec.name].codes > 0, dtype=torch.float32)
            getattr(self, f"bag_rows_{spec.name}").copy_(bag)
            getattr(self, f"bag_weights_{spec.name}").copy_(
                present / present.sum(1, keepdim=True).clamp(min=1)
            )
        stats = dense_statistics(train, self.info.n_users, self.info.n_items)
        for name, value in stats.items():
            getattr(self, name).copy_(value.float())
        mean = float(train.ratings.mean()) if len(train) else float(self.info.global_mean)
        self.rating_mean.fill_(mean)
        known = self.item_year > 0
        fill = float(self.item_year[known].mean()) if bool(known.any()) else 0.0
        self.item_year.copy_(torch.where(known, self.item_year, torch.tensor(fill)))
        if len(self.dense_names):
            users = torch.as_tensor(train.users, device=device).long()
            items = torch.as_tensor(train.items, device=device).long()
            x = self.dense_features(users, items, None, standardize=False).double()
            self.dense_mean.copy_(x.mean(0).float())
            if len(train) > 1:
                std = x.std(0)
                self.dense_std.copy_(torch.where(std > 1e-6, std, 1.0).float())  # constant: centre only
        if self.params.task == "like":
            rate = float((train.ratings >= self.params.like_rating).mean()) if len(train) else 0.5
            rate = min(max(rate, 1e-4), 1 - 1e-4)
            self.offset.fill_(math.log(rate / (1 - rate)))
        else:
            self.offset.fill_(mean)
        super().prepare(train, seed)

    # -- features ------------------------------------------------------------------------------

    def dense_features(
        self,
        users: torch.Tensor,
        items: torch.Tensor,
        ratings: torch.Tensor | None = None,
        standardize: bool = True,
    ) -> torch.Tensor:
        """(B, n_dense) dense features; with ``ratings`` (training rows) each row's own rating is
        left out of the user and item statistics, so a feature never contains the target."""
        user_count, user_sum = self.user_count[users], self.user_sum[users]
        item_count, item_sum = self.item_count[items], self.item_sum[items]
        if ratings is not None and self.params.leave_one_out:
            own_user, own_item = (user_count > 0).float(), (item_count > 0).float()  # a training row
            user_count, user_sum = user_count - own_user, user_sum - own_user * ratings
            item_count, item_sum = item_count - own_item, item_sum - own_item * ratings
        damp, mu = self.params.mean_damping, self.rating_mean
        columns = {
            "popularity": lambda: torch.log1p(item_count),
            "item_mean": lambda: (item_sum + damp * mu) / (item_count + damp).clamp_min(1e-6),
            "year": lambda: self.item_year[items],
            "user_mean": lambda: (user_sum + damp * mu) / (user_count + damp).clamp_min(1e-6),
            "activity": lambda: torch.log1p(user_count),
        }
        if not self.dense_names:
            return torch.zeros(len(users), 0, device=users.device)
        x = torch.stack([columns[n]() for n in self.dense_names], 1)
        return (x - self.dense_mean) / self.dense_std if standardize else x

    def field_vectors(
        self, users: torch.Tensor, items: torch.Tensor, squares: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, F, D') per-field vectors (bags: weighted sum of their rows); with ``squares`` also the
        sum of squared, squared-weighted rows per field, which the FM identity subtracts."""
        user_rows, item_rows = self.user_rows[users], self.item_rows[items]
        vectors, sq = [], []
        u = i = 0
        for spec in self.one_hot:
            if spec.side == "user":
                rows, u = user_rows[:, u], u + 1
            else:
                rows, i = item_rows[:, i], i + 1
            v = self.tables[spec.name](rows)
            vectors.append(v)
            if squares:
                sq.append(v * v)
        for spec in self.bags:
            rows = getattr(self, f"bag_rows_{spec.name}")[items]
            weights = getattr(self, f"bag_weights_{spec.name}")[items]
            table = self.tables[spec.name]
            vectors.append(table(rows, per_sample_weights=weights))
            if squares:
                each = torch.nn.functional.embedding(rows, table.weight, sparse=table.sparse)
                sq.append((each * each * (weights * weights).unsqueeze(-1)).sum(1))
        return torch.stack(vectors, 1), (torch.stack(sq, 1) if squares else None)

    # -- the model -----------------------------------------------------------------------------

    def interact(
        self, users: torch.Tensor, items: torch.Tensor, dense: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(score per row without the offset, weighted L2 penalty of the batch): what a model defines."""
        raise NotImplementedError

    def logits(
        self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(offset + interaction per row, penalty): a rating, or the log-odds of a like."""
        dense = self.dense_features(users, items, ratings)
        score, penalty = self.interact(users, items, dense)
        return self.offset + score.float(), penalty

    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        out, _ = self.logits(users, items)
        return torch.sigmoid(out) if self.params.task == "like" else out

    def batch_loss(self, users, items, ratings):
        out, penalty = self.logits(users, items, ratings)
        if self.params.task == "like":
            target = (ratings >= self.params.like_rating).float()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(out, target, reduction="sum")
        else:
            loss = ((out - ratings) ** 2).sum()
        return loss + penalty, loss


Sizes = list[Annotated[int, Field(ge=1)]]
