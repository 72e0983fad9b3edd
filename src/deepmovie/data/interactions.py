"""Columnar rating data with contiguous indices: the form every split, model and metric consumes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class RatingScale:
    """The range predictions are clipped to, and the grid ratings live on (0.5 for half stars)."""

    low: float
    high: float
    step: float = 1.0

    @property
    def levels(self) -> np.ndarray:
        """Every possible rating value, e.g. [1, 2, 3, 4, 5]."""
        count = round((self.high - self.low) / self.step) + 1
        return (self.low + self.step * np.arange(count)).astype(np.float32)

    @classmethod
    def infer(cls, ratings: np.ndarray) -> RatingScale:
        """Guess the scale of a file that does not declare one: observed range, half or whole steps."""
        low, high = float(ratings.min()), float(ratings.max())
        if np.all(ratings == np.round(ratings)):
            step = 1.0
        elif np.all(ratings * 2 == np.round(ratings * 2)):
            step = 0.5
        else:
            step = 0.0  # continuous scores: no grid
        return cls(low, high, step)

    def to_dict(self) -> dict[str, float]:
        return {"low": self.low, "high": self.high, "step": self.step}


class IdMap:
    """Bidirectional map between raw ids (ints or strings) and contiguous indices 0..n-1."""

    def __init__(self, raw_ids: np.ndarray) -> None:
        self.raw = raw_ids
        self._lookup: dict | None = None

    def __len__(self) -> int:
        return len(self.raw)

    @classmethod
    def encode(cls, values: np.ndarray) -> tuple[IdMap, np.ndarray]:
        """Build the map from a raw id column and return it with the column as int32 indices."""
        if values.dtype.kind in "iu" and len(values) and values.min() >= 0 and values.max() < 2**31:
            # Dense presence table: O(n) instead of the O(n log n) sort in np.unique.
            present = np.zeros(int(values.max()) + 1, dtype=bool)
            present[values] = True
            raw = np.flatnonzero(present)
            position = (np.cumsum(present, dtype=np.int64) - 1).astype(np.int32)
            return cls(raw.astype(np.int64)), position[values]
        raw, codes = np.unique(values, return_inverse=True)
        return cls(raw), codes.astype(np.int32)

    def index_of(self, raw_values: np.ndarray) -> np.ndarray:
        """Indices of raw ids; -1 where an id is unknown. Ids are compared exactly: an integer map is
        asked for the integer each value spells (text included, never through float); a text map for
        each value's text."""
        raw_values = np.asarray(raw_values)
        if self.raw.dtype.kind in "iu":
            raw_values, valid = _int64_ids(raw_values)
        else:
            raw_values, valid = raw_values.astype(str), True  # '<U2' would cut 'm10' to 'm1'
        pos = np.searchsorted(self.raw, raw_values)
        pos = np.clip(pos, 0, max(len(self.raw) - 1, 0))
        found = len(self.raw) > 0 and valid & (self.raw[pos] == raw_values)
        return np.where(found, pos, -1).astype(np.int64)

    def to_raw(self, indices: np.ndarray) -> np.ndarray:
        return self.raw[indices]


def _int64_ids(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``values`` as int64, and where they are integers that int64 holds (the others are unknown ids):
    a uint64 past 2**63 - 1 is not wrapped, a float or '7.5' not truncated, '9007199254740993' exact."""
    if values.dtype.kind == "i":
        return values.astype(np.int64, copy=False), np.ones(values.shape, dtype=bool)
    if values.dtype.kind == "u":
        valid = values <= np.iinfo(np.int64).max
        return np.where(valid, values, 0).astype(np.int64), valid
    text = values.astype(str)
    try:
        return text.astype(np.int64), np.ones(values.shape, dtype=bool)  # NumPy parses text exactly
    except (ValueError, OverflowError):  # some values are not int64 integers: only those are unknown
        parsed = [_int64(v) for v in text.tolist()]
        valid = np.array([v is not None for v in parsed], dtype=bool)
        return np.array([v or 0 for v in parsed], dtype=np.int64), valid


def _int64(text: str) -> int | None:
    try:
        value = int(text)
    except ValueError:
        return None
    return value if -(2**63) <= value < 2**63 else None


@dataclass
class Interactions:
    """Parallel arrays of (user index, item index, rating[, timestamp]) over fixed index spaces."""

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    n_users: int
    n_items: int
    timestamps: np.ndarray | None = None
    _csr: sp.csr_matrix | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.ratings)

    def subset(self, index: np.ndarray) -> Interactions:
        """Rows selected by an index or boolean mask, same index spaces."""
        ts = self.timestamps[index] if self.timestamps is not None else None
        return Interactions(
            self.users[index], self.items[index], self.ratings[index], self.n_users, self.n_items, ts
        )

    def concat(self, other: Interactions) -> Interactions:
        """These rows followed by ``other``'s (same index spaces)."""
        has_time = self.timestamps is not None and other.timestamps is not None
        return Interactions(
            np.concatenate([self.users, other.users]),
            np.concatenate([self.items, other.items]),
            np.concatenate([self.ratings, other.ratings]),
            self.n_users,
            self.n_items,
            np.concatenate([self.timestamps, other.timestamps]) if has_time else None,
        )

    def csr(self) -> sp.csr_matrix:
        """User x item matrix of ratings (cached; rows sorted by item)."""
        if self._csr is None:
            self._csr = sp.csr_matrix(
                (self.ratings.astype(np.float32), (self.users, self.items)),
                shape=(self.n_users, self.n_items),
            )
            self._csr.sort_indices()
        return self._csr

    def user_counts(self) -> np.ndarray:
        return np.bincount(self.users, minlength=self.n_users)

    def item_counts(self) -> np.ndarray:
        return np.bincount(self.items, minlength=self.n_items)

    def pair_keys(self) -> np.ndarray:
        """One int64 per (user, item) pair, for joins and duplicate checks."""
        return self.users.astype(np.int64) * self.n_items + self.items
