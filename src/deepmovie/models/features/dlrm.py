"""DLRM (Naumov et al. 2019): bottom MLP over dense features, one embedding table per field,
pairwise dot-product interactions, top MLP.

As in the notes: the dense features go through the bottom MLP to a vector of the embedding size, which
joins the field vectors; the dot products of every pair of those vectors (the second-order
interactions, as in a factorization machine) are concatenated with the dense vector and the top MLP
scores the row. The notes' Kaggle sizes (bottom 512-256-64, top 512-256, embeddings 16) are
``--set bottom=[512,256,64] --set top=[512,256] --set dim=16``; the bottom MLP always ends in a
projection to ``dim``. Every embedding table is one field's, laid out by
:class:`deepmovie.models.features.fields.TableLayout` so that tables can be sharded across ranks:
under ``torchrun``, ``--set shard_tables=true`` cuts the global row space of all the tables into one
contiguous range per rank (:class:`deepmovie.models.features.sharded.RowShardedEmbedding`) while the
MLPs stay data parallel. Each rank still builds the whole initial tables once (the same seeded values
as a single-process run) before keeping its range, so sharding bounds the training memory (optimizer
state included), not that first allocation.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from deepmovie.engine import distributed
from deepmovie.errors import DeepMovieError
from deepmovie.models.base import DataInfo
from deepmovie.models.features.base import FeatureModel, NeuralFeatureParams, Sizes
from deepmovie.models.features.sharded import RowShardedEmbedding
from deepmovie.models.layers import mlp
from deepmovie.models.registry import MODELS


class DLRMParams(NeuralFeatureParams):
    """Defaults chosen on the validation rows of ML-100K fold u1 (never on u1.test)."""

    bottom: Sizes = Field(default_factory=lambda: [64], description="bottom MLP hidden sizes (then -> dim)")
    top: Sizes = Field(default_factory=lambda: [256, 128], description="top MLP hidden sizes (then -> 1)")
    shard_tables: bool = Field(
        False, description="under torchrun: the tables' rows split across ranks, lookups exchanged"
    )


@MODELS.register("dlrm")
class DLRM(FeatureModel):
    """``top([bottom(dense), <z_a, z_b> for a < b])`` with ``z`` = the dense vector and the field vectors."""

    Params = DLRMParams
    params: DLRMParams

    def __init__(self, params: DLRMParams, info: DataInfo) -> None:
        super().__init__(params, info)
        n_vectors = len(self.layout.fields)
        if self.dense_names:
            self.bottom, _ = mlp(len(self.dense_names), [*params.bottom, params.dim], params.activation, 0.0)
            n_vectors += 1
        upper = torch.triu_indices(n_vectors, n_vectors, offset=1)
        self.register_buffer("pairs", upper, persistent=False)
        width = upper.shape[1] + (params.dim if self.dense_names else 0)
        self.top, width = mlp(width, params.top, params.activation, params.dropout)
        self.out = torch.nn.Linear(width, 1)
        torch.nn.init.zeros_(self.out.bias)
        self.sharded = self._shard_tables() if params.shard_tables else None

    def _shard_tables(self) -> RowShardedEmbedding:
        """Move every table into one row-sharded global table (this rank's rows of it)."""
        full = torch.cat([self.tables[spec.name].weight.detach() for spec in self.layout.fields])
        self.tables = torch.nn.ModuleDict()
        offsets = dict(zip([s.name for s in self.layout.fields], self.layout.offsets, strict=True))
        one_hot = [offsets[s.name] for s in self.one_hot]
        self.register_buffer("one_hot_offsets", torch.tensor(one_hot, dtype=torch.long), persistent=False)
        self.bag_offsets = [offsets[s.name] for s in self.bags]
        ranges = self.layout.row_ranges(distributed.world_size())
        return RowShardedEmbedding(full, ranges, sparse=self.params.sparse)

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Refuse what cannot be restored: the checkpoint holds rank 0's optimizer state only."""
        if self.sharded is not None and distributed.world_size() > 1:
            raise DeepMovieError(
                "dlrm with shard_tables cannot resume under torchrun (each rank's optimizer state for its "
                "rows is not checkpointed); start the run again"
            )
        super().load_training_state(state)

    def field_vectors(
        self, users: torch.Tensor, items: torch.Tensor, squares: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-field vectors as the base class computes them, from the sharded table when there is one:
        every id of the batch (one-hot fields, then each bag's rows) goes through one exchange."""
        if self.sharded is None:
            return super().field_vectors(users, items, squares)
        columns, u, i = [], 0, 0
        user_rows, item_rows = self.user_rows[users], self.item_rows[items]
        for spec in self.one_hot:
            if spec.side == "user":
                columns.append(user_rows[:, u])
                u += 1
            else:
                columns.append(item_rows[:, i])
                i += 1
        ids = [torch.stack(columns, 1) + self.one_hot_offsets] if columns else []
        weights = []
        for spec, offset in zip(self.bags, self.bag_offsets, strict=True):
            ids.append(getattr(self, f"bag_rows_{spec.name}")[items] + offset)
            weights.append(getattr(self, f"bag_weights_{spec.name}")[items])
        rows = self.sharded(torch.cat(ids, 1))
        vectors = [rows[:, : len(columns)]]
        start = len(columns)
        for w in weights:
            vectors.append((rows[:, start : start + w.shape[1]] * w[..., None]).sum(1, keepdim=True))
            start += w.shape[1]
        return torch.cat(vectors, 1), None

    def interact(self, users, items, dense):
        vectors, _ = self.field_vectors(users, items)
        parts = []
        if self.dense_names:
            bottom = self.bottom(dense)
            parts.append(bottom)
            vectors_all = torch.cat([bottom.unsqueeze(1), vectors], 1)
        else:
            vectors_all = vectors
        dots = torch.bmm(vectors_all, vectors_all.transpose(1, 2))
        parts.append(dots[:, self.pairs[0], self.pairs[1]])
        score = self.out(self.top(torch.cat(parts, 1)))[:, 0]
        return score, self.params.reg * (vectors * vectors).sum()
