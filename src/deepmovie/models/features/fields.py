"""The feature pipeline of the feature-based models: categorical fields, bags, dense features, tables.

Every rating (user u, item i) becomes

* one-hot fields: ``user``, ``item``, ``year`` (release-year bucket), and the user's ``gender``,
  ``age``, ``occupation``, ``zip_prefix`` where the dataset has them;
* bag fields (several categories at once, each weighted 1/size): ``genres`` and ``tags``;
* dense features: item popularity (log count), item and user mean rating (damped towards the global
  mean), release year and user activity (log count), standardized over the training rows.

Everything that depends on ratings (which categories exist, frequencies, means, standardization) is
computed in :meth:`FeaturePipeline.fit` from the *training* rows only, so validation and test rows never
shape the features. A category with no training row maps to the reserved row 0 of its table, which is
initialised to zero and so contributes nothing until it is trained.

Embedding tables: one per field. Row 0 is reserved; a field whose vocabulary exceeds ``max_rows`` is
either frequency-capped (the ``max_rows - 1`` most frequent training categories keep a row, the rest
share row 0) or, with ``hashing``, hashed into rows ``1 .. max_rows - 1``. :class:`TableLayout`
records every table's size and its offset in one global row space (``offsets``), the form a sharded
embedding needs: table-wise placement (:meth:`TableLayout.place_tables`) or contiguous row ranges of
the global space (:meth:`TableLayout.row_ranges`).
"""

from __future__ import annotations

import itertools
import zlib
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from deepmovie.data.interactions import Interactions
from deepmovie.errors import DeepMovieError
from deepmovie.models.base import DataInfo

USER_FIELDS = ("gender", "age", "occupation", "zip_prefix")
ONE_HOT_FIELDS = ("user", "item", "year", *USER_FIELDS)
BAG_FIELDS = ("genres", "tags")
ALL_FIELDS = ONE_HOT_FIELDS + BAG_FIELDS
DENSE_FEATURES = ("popularity", "item_mean", "year", "user_mean", "activity")
Side = Literal["user", "item"]


@dataclass(frozen=True)
class FieldSpec:
    """One categorical field: where its codes come from and the size of its embedding table."""

    name: str
    side: Side  # the codes are a function of the user or of the item
    bag: bool  # several categories per row (genres, tags) instead of exactly one
    vocab: int  # category codes 0 .. vocab - 1; code 0 means unknown
    rows: int  # embedding-table rows after the cap; row 0 is reserved
    hashed: bool  # codes are hashed into rows 1 .. rows - 1 (else: frequency cap)


@dataclass(frozen=True)
class TableLayout:
    """The embedding tables of a model, in field order, with their offsets in one global row space.

    Row ``r`` of field ``f`` is global row ``offsets[f] + r``; ``total_rows`` rows in all. A sharded
    embedding can place whole tables on ranks (:meth:`place_tables`) or cut the global row space into
    contiguous ranges (:meth:`row_ranges`) and look rows up by offset.
    """

    fields: tuple[FieldSpec, ...]
    dim: int  # columns of every table

    @property
    def offsets(self) -> list[int]:
        return np.concatenate([[0], np.cumsum([f.rows for f in self.fields])[:-1]]).astype(int).tolist()

    @property
    def total_rows(self) -> int:
        return int(sum(f.rows for f in self.fields))

    def place_tables(self, world_size: int) -> list[list[str]]:
        """Table-wise sharding: each rank's tables, largest first onto the least loaded rank."""
        if world_size < 1:
            raise DeepMovieError(f"world_size must be >= 1, not {world_size}")
        ranks: list[list[str]] = [[] for _ in range(world_size)]
        load = [0] * world_size
        for spec in sorted(self.fields, key=lambda f: -f.rows):
            rank = load.index(min(load))
            ranks[rank].append(spec.name)
            load[rank] += spec.rows
        return ranks

    def row_ranges(self, world_size: int) -> list[tuple[int, int]]:
        """Row-wise sharding: ``[start, stop)`` of the global row space owned by each rank."""
        if world_size < 1:
            raise DeepMovieError(f"world_size must be >= 1, not {world_size}")
        bounds = np.linspace(0, self.total_rows, world_size + 1).round().astype(int)
        return [(int(a), int(b)) for a, b in itertools.pairwise(bounds)]

    def describe(self) -> str:
        """One line per table: name, rows, global offset, bytes at float32."""
        lines = [f"{len(self.fields)} tables, {self.total_rows:,} rows x {self.dim} columns"]
        for spec, offset in zip(self.fields, self.offsets, strict=True):
            how = "hashed" if spec.hashed else ("capped" if spec.rows < spec.vocab else "exact")
            lines.append(
                f"  {spec.name:<11} rows {spec.rows:>9,} (vocab {spec.vocab:,}, {how}) offset {offset:,}"
                f" {spec.rows * self.dim * 4 / 2**20:.2f} MiB"
            )
        return "\n".join(lines)


def hash_codes(codes: np.ndarray, rows: int, salt: str) -> np.ndarray:
    """Deterministic hash of category codes onto rows ``1 .. rows - 1`` (row 0 stays reserved)."""
    x = codes.astype(np.uint64) + np.uint64(zlib.crc32(salt.encode()))
    x = x * np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: wraps modulo 2**64
    x ^= x >> np.uint64(31)
    return (1 + (x % np.uint64(rows - 1))).astype(np.int64)


@dataclass
class FieldCodes:
    """Raw category codes of a field, before the training rows decide which ones get a row."""

    spec_name: str
    side: Side
    codes: np.ndarray  # (n,) for one-hot fields; (n, L) padded with 0 for bags
    vocab: int


@dataclass
class FeaturePipeline:
    """Codes of every field from the side information, and the fit that maps them to table rows."""

    info: DataInfo
    names: list[str]
    year_bucket: int = 5
    max_tags: int = 16
    codes: dict[str, FieldCodes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.names:
            self.codes[name] = self._codes(name)

    @staticmethod
    def available(info: DataInfo) -> list[str]:
        """The fields this dataset can feed, in canonical order."""
        names = ["user", "item"]
        items, users = info.items, info.users
        if items is not None and (np.asarray(items.years) > 0).any():
            names.append("year")
        if users is not None:
            names += [n for n in USER_FIELDS if n in users.fields]
        if items is not None and items.genres.shape[1] > 0 and items.genres.any():
            names.append("genres")
        if items is not None and any(items.tags):
            names.append("tags")
        return names

    def _codes(self, name: str) -> FieldCodes:
        info = self.info
        if name == "user":
            return FieldCodes(name, "user", np.arange(1, info.n_users + 1), info.n_users + 1)
        if name == "item":
            return FieldCodes(name, "item", np.arange(1, info.n_items + 1), info.n_items + 1)
        if name == "year":
            years = np.asarray(info.items.years, dtype=np.int64)
            first = int(years[years > 0].min())
            buckets = np.where(years > 0, 1 + (years - first) // self.year_bucket, 0)
            return FieldCodes(name, "item", buckets, int(buckets.max()) + 1)
        if name in USER_FIELDS:
            codes, vocab = info.users.fields[name]
            return FieldCodes(name, "user", np.asarray(codes, dtype=np.int64), len(vocab))
        if name == "genres":
            multi_hot = np.asarray(info.items.genres, dtype=bool)
            return FieldCodes(name, "item", _pad_bags(multi_hot), multi_hot.shape[1] + 1)
        # tags: the vocabulary is every tag in the metadata; the fit keeps those of training items
        vocab = sorted({t for words in info.items.tags for t in words})
        index = {t: k + 1 for k, t in enumerate(vocab)}
        width = max(1, min(self.max_tags, max(len(w) for w in info.items.tags)))
        codes = np.zeros((info.n_items, width), dtype=np.int64)
        for item, words in enumerate(info.items.tags):
            kept = [index[t] for t in words[:width]]
            codes[item, : len(kept)] = kept
        return FieldCodes(name, "item", codes, len(vocab) + 1)

    def layout(self, dim: int, max_rows: int, hashing: bool) -> TableLayout:
        """Table sizes: the vocabulary, or ``max_rows`` where that caps it."""
        specs = []
        for name in self.names:
            c = self.codes[name]
            capped = bool(max_rows) and c.vocab > max_rows
            rows = max_rows if capped else c.vocab
            specs.append(FieldSpec(name, c.side, c.codes.ndim == 2, c.vocab, rows, capped and hashing))
        return TableLayout(tuple(specs), dim)

    def fit(self, train: Interactions, layout: TableLayout, min_count: int = 1) -> dict[str, np.ndarray]:
        """Row of every (user or item, field) from the training rows: unseen or rare codes -> row 0."""
        rows: dict[str, np.ndarray] = {}
        for spec in layout.fields:
            c = self.codes[spec.name]
            owner = train.users if spec.side == "user" else train.items
            per_row = c.codes[owner]  # the codes of every training rating
            counts = np.bincount(per_row.ravel(), minlength=c.vocab)
            counts[0] = 0  # code 0 (unknown, padding) never earns a row
            mapping = np.zeros(c.vocab, dtype=np.int64)
            seen = np.flatnonzero(counts >= min_count)
            if spec.hashed:
                mapping[seen] = hash_codes(seen, spec.rows, spec.name)
            elif spec.rows < spec.vocab:  # frequency cap: the most frequent codes keep a row
                top = seen[np.argsort(-counts[seen], kind="stable")][: spec.rows - 1]
                mapping[top] = np.arange(1, len(top) + 1)
            else:
                mapping[seen] = seen
            rows[spec.name] = mapping[c.codes]
        return rows


def dense_statistics(train: Interactions, n_users: int, n_items: int) -> dict[str, torch.Tensor]:
    """Per-user and per-item rating counts and sums of the training rows (the dense features' source)."""
    users = torch.as_tensor(train.users).long()
    items = torch.as_tensor(train.items).long()
    ratings = torch.as_tensor(train.ratings, dtype=torch.float64)
    return {
        "user_count": torch.bincount(users, minlength=n_users).double(),
        "user_sum": torch.zeros(n_users, dtype=torch.float64).index_add_(0, users, ratings),
        "item_count": torch.bincount(items, minlength=n_items).double(),
        "item_sum": torch.zeros(n_items, dtype=torch.float64).index_add_(0, items, ratings),
    }


def _pad_bags(multi_hot: np.ndarray) -> np.ndarray:
    """A multi-hot matrix as padded code lists: row n holds 1 + the column of each set entry, then 0s."""
    width = max(1, int(multi_hot.sum(1).max(initial=0)))
    codes = np.zeros((len(multi_hot), width), dtype=np.int64)
    rows, cols = np.nonzero(multi_hot)
    position = np.cumsum(multi_hot, axis=1)[rows, cols] - 1
    codes[rows, position] = cols + 1
    return codes
