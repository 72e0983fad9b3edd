"""Deep matrix factorization: user and item embeddings (plus optional side features) through an MLP.

The tutorial's model ("deep matrix factorization", MXNet): concatenate the user and the movie
embeddings instead of taking their dot product, and let a jointly trained MLP score the pair. Its
variants are all settings here: batch norm before each activation, asymmetric embedding sizes (user 15
/ movie 25), a genre embedding, and a classification head over the rating levels (softmax). The lab
(U Kang, SNU) is the small version: K=10 and hidden layers 10 and 5 (configs/deepmf-lab.yaml).
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field

from deepmovie.errors import DeepMovieError
from deepmovie.models.base import DataInfo
from deepmovie.models.layers import Activation, Biases, embedding, mlp
from deepmovie.models.minibatch import MiniBatchModel, MiniBatchParams
from deepmovie.models.registry import MODELS


class DeepMFParams(MiniBatchParams):
    """Defaults chosen on the validation rows of ML-100K fold u1 (never on u1.test)."""

    epochs: int = Field(60, ge=1)
    patience: int = Field(5, ge=0)
    user_dim: int = Field(32, ge=1, description="user embedding size")
    item_dim: int = Field(32, ge=1, description="item embedding size (may differ from user_dim)")
    hidden: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: [64, 32], description="MLP hidden layer sizes"
    )
    activation: Activation = "relu"
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout after each hidden activation")
    batch_norm: bool = Field(False, description="BatchNorm1d before each hidden activation")
    init_std: float = Field(0.1, gt=0, description="std of the normal initialisation of embeddings")
    reg: float = Field(1.0, ge=0, description="L2 on the user and item embedding rows a batch touches")
    biases: bool = Field(False, description="regression head: add user and item biases (L2: reg)")
    genre_dim: int = Field(0, ge=0, description="genre embedding size: mean over all of an item's genres")
    year_dim: int = Field(0, ge=0, description="release-year bucket embedding size (0: off)")
    year_bucket: int = Field(5, ge=1, description="years per release-year bucket")
    user_feature_dim: int = Field(0, ge=0, description="embedding size of each user feature (0: off)")
    user_fields: list[str] = Field(
        default_factory=lambda: ["gender", "age", "occupation"], description="user features used"
    )
    head: Literal["regression", "classification"] = Field(
        "regression", description="regression: mean + MLP output; classification: softmax over levels"
    )


@MODELS.register("deepmf")
class DeepMF(MiniBatchModel):
    """``MLP([p_u, q_i, genres_i, year_i, user features])``: the tutorial's deep matrix factorization."""

    Params = DeepMFParams
    params: DeepMFParams

    def __init__(self, params: DeepMFParams, info: DataInfo) -> None:
        super().__init__(params, info)
        self.user_factors = embedding(info.n_users, params.user_dim, params.init_std, params.sparse)
        self.item_factors = embedding(info.n_items, params.item_dim, params.init_std, params.sparse)
        width = params.user_dim + params.item_dim
        width += self._build_genres(params, info)
        width += self._build_years(params, info)
        width += self._build_user_features(params, info)
        self.mlp, width = mlp(width, params.hidden, params.activation, params.dropout, params.batch_norm)
        self.register_buffer("mean", torch.tensor(float(info.global_mean)))
        if params.head == "classification":
            if info.scale.step <= 0:
                raise DeepMovieError(
                    "head='classification' needs ratings on a grid; this scale is continuous"
                )
            self.register_buffer("levels", torch.as_tensor(info.scale.levels, dtype=torch.float32))
            self.out = torch.nn.Linear(width, len(self.levels))
        else:
            self.out = torch.nn.Linear(width, 1)
            torch.nn.init.zeros_(self.out.bias)
        if params.biases:
            if params.head != "regression":
                raise DeepMovieError("biases: true needs head='regression' (a class logit has no offset)")
            self.biases = Biases(info.n_users, info.n_items, params.sparse)

    def _build_genres(self, params: DeepMFParams, info: DataInfo) -> int:
        if not params.genre_dim:
            return 0
        if info.items is None or info.items.genres.shape[1] == 0:
            raise DeepMovieError(
                "genre_dim > 0 needs item genres, but this dataset has none (set genre_dim=0)"
            )
        multi_hot = torch.as_tensor(info.items.genres.astype(np.float32))
        # Every genre of an item counts: the item's genre vector is the mean of its genre embeddings.
        self.register_buffer("genre_weights", multi_hot / multi_hot.sum(1, keepdim=True).clamp(min=1))
        self.genre_embedding = torch.nn.Linear(multi_hot.shape[1], params.genre_dim, bias=False)
        torch.nn.init.normal_(self.genre_embedding.weight, std=params.init_std)
        return params.genre_dim

    def _build_years(self, params: DeepMFParams, info: DataInfo) -> int:
        if not params.year_dim:
            return 0
        years = None if info.items is None else np.asarray(info.items.years, dtype=np.int64)
        if years is None or not (years > 0).any():
            raise DeepMovieError("year_dim > 0 needs item release years, but this dataset has none")
        first = int(years[years > 0].min())
        buckets = np.where(years > 0, 1 + (years - first) // params.year_bucket, 0)  # 0: unknown year
        self.register_buffer("year_buckets", torch.as_tensor(buckets))
        self.year_embedding = embedding(int(buckets.max()) + 1, params.year_dim, params.init_std, False)
        return params.year_dim

    def _build_user_features(self, params: DeepMFParams, info: DataInfo) -> int:
        if not params.user_feature_dim:
            return 0
        if info.users is None:
            raise DeepMovieError(
                "user_feature_dim > 0 needs user demographics, but this dataset has none "
                "(set user_feature_dim=0)"
            )
        missing = [name for name in params.user_fields if name not in info.users.fields]
        if missing or not params.user_fields:
            raise DeepMovieError(
                f"user_fields: {missing or 'none'} not among this dataset's user features "
                f"{sorted(info.users.fields)}"
            )
        fields = [info.users.fields[name] for name in params.user_fields]
        codes = np.stack([np.asarray(c, dtype=np.int64) for c, _ in fields], axis=1)
        self.register_buffer("user_codes", torch.as_tensor(codes))
        self.user_feature_tables = torch.nn.ModuleList(
            embedding(len(vocab), params.user_feature_dim, params.init_std, False) for _, vocab in fields
        )
        return params.user_feature_dim * len(fields)

    def features(
        self, users: torch.Tensor, items: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(MLP input, user embeddings, item embeddings) of index pairs."""
        p, q = self.user_factors(users), self.item_factors(items)
        parts = [p, q]
        if self.params.genre_dim:
            parts.append(self.genre_embedding(self.genre_weights[items]))
        if self.params.year_dim:
            parts.append(self.year_embedding(self.year_buckets[items]))
        if self.params.user_feature_dim:
            codes = self.user_codes[users]
            parts += [table(codes[:, k]) for k, table in enumerate(self.user_feature_tables)]
        return torch.cat(parts, dim=-1), p, q

    def scores(
        self, users: torch.Tensor, items: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(head output: a rating offset or one logit per level, user embeddings, item embeddings)."""
        x, p, q = self.features(users, items)
        return self.out(self.mlp(x)), p, q

    def _rating(
        self, output: torch.Tensor, users: torch.Tensor, items: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | float]:
        """(predicted rating, squared norm of the biases it used, for L2)."""
        if self.params.head == "classification":
            return torch.softmax(output.float(), dim=-1) @ self.levels, 0.0  # the expected rating
        rating = self.mean + output[:, 0].float()
        if not self.params.biases:
            return rating, 0.0
        offsets, norm = self.biases(users, items)
        return rating + offsets, norm

    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self._rating(self.scores(users, items)[0], users, items)[0]

    def predict_argmax(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """The most likely rating level (the tutorial's argmax prediction); classification head only."""
        if self.params.head != "classification":
            raise DeepMovieError("predict_argmax needs head='classification'")
        return self.levels[self.scores(users, items)[0].argmax(-1)]

    def extra_metrics(self, users, items, ratings):
        """The classification head's own figures: level accuracy and the RMSE of the argmax rating
        (the test RMSE is that of the expected value)."""
        if self.params.head != "classification":
            return {}
        argmax = torch.cat([self.predict_argmax(u, i) for u, i in _chunks(users, items)])
        levels = (
            self.levels[0]
            + self.info.scale.step * ((ratings - self.levels[0]) / self.info.scale.step).round()
        )
        return {
            "accuracy": float((argmax == levels).float().mean()),
            "argmax_rmse": float(((argmax - ratings) ** 2).mean().sqrt()),
        }

    def batch_loss(self, users, items, ratings):
        output, p, q = self.scores(users, items)
        rating, bias_norm = self._rating(output, users, items)
        squared = ((rating - ratings) ** 2).sum()
        if self.params.head == "classification":
            low, step = float(self.levels[0]), self.info.scale.step
            target = ((ratings - low) / step).round().long().clamp(0, len(self.levels) - 1)
            objective = torch.nn.functional.cross_entropy(output.float(), target, reduction="sum")
        else:
            objective = squared
        if self.params.reg:
            objective = objective + self.params.reg * ((p * p).sum() + (q * q).sum() + bias_norm)
        return objective, squared


def _chunks(users: torch.Tensor, items: torch.Tensor, size: int = 1 << 16):
    for start in range(0, len(users), size):
        yield users[start : start + size], items[start : start + size]
