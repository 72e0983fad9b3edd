"""Evaluation protocols: seeded train / validation / test splits, each recorded by name, seed and hash.

A protocol is a function ``(dataset, rng, *args) -> list of (train, valid or None, test) row arrays``
registered under its spec name (``random``, ``convmf``, ``fold`` ...). Validation rows are carved from
the training part when a protocol does not define them, so test rows are only ever used at the end.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from deepmovie.data.dataset import Dataset
from deepmovie.data.interactions import Interactions
from deepmovie.data.readers import read_ratings
from deepmovie.errors import DeepMovieError
from deepmovie.registry import Registry

Rows = np.ndarray


class Fold(NamedTuple):
    """Row indices of one partition; ``number`` names the fold of a multi-fold protocol; ``fold_in``
    holds the visible ratings of held-out users (strong generalization), never trained on."""

    train: Rows
    valid: Rows | None
    test: Rows
    number: int | None = None
    fold_in: Rows | None = None


PROTOCOLS: Registry[Callable[..., list[Fold]]] = Registry("split")


@dataclass
class Split:
    """One train / validation / test partition of a dataset's ratings."""

    name: str
    seed: int
    fold: int | None
    train: Interactions
    valid: Interactions
    test: Interactions
    test_hash: str
    fold_in: Interactions | None = None  # held-out users' visible ratings: folded in, then tested

    @property
    def strong(self) -> bool:
        """Whether the test users are held out of training (scored by fold-in, not by their rows)."""
        return self.fold_in is not None

    def record(self) -> dict[str, object]:
        return {"split": self.name, "seed": self.seed, "fold": self.fold, "split_hash": self.test_hash}


def make_splits(dataset: Dataset, spec: str, seed: int = 0, valid_fraction: float = 0.1) -> list[Split]:
    """Every fold a spec names (one for most protocols, K for ``kfold:K``)."""
    if not 0 <= valid_fraction < 1:
        raise DeepMovieError(f"valid_fraction: {valid_fraction} is not in [0, 1)")
    name, *args = spec.split(":")
    protocol = PROTOCOLS.get(name)
    rng = np.random.default_rng(seed)
    try:
        folds = protocol(dataset, rng, *args)
    except (TypeError, ValueError) as exc:
        raise DeepMovieError(f"split {spec!r}: {exc} (see `deepmovie splits`)") from None
    data = dataset.interactions
    splits = []
    for train, valid, test, number, fold_in in folds:
        if valid is None:
            train, valid = _carve_valid(data, train, valid_fraction, rng, temporal=name == "temporal")
        _refuse_overlap(dataset, train, test, spec)
        if len(test) == 0 or len(train) == 0:
            raise DeepMovieError(f"split {spec!r} leaves an empty train or test part")
        splits.append(
            Split(
                spec,
                seed,
                number,
                data.subset(train),
                data.subset(valid),
                data.subset(test),
                _hash_rows(dataset, test),
                data.subset(fold_in) if fold_in is not None else None,
            )
        )
    return splits


def _fraction(text: str, what: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise ValueError(f"{what} fraction {text} is not between 0 and 1")
    return value


def _carve_valid(
    data: Interactions, train: Rows, fraction: float, rng: np.random.Generator, temporal: bool
) -> tuple[Rows, Rows]:
    """Hold out part of the training rows for early stopping and tuning (latest rows if temporal)."""
    size = round(len(train) * fraction)
    train = train[np.argsort(data.timestamps[train], kind="stable")] if temporal else rng.permutation(train)
    return np.sort(train[: len(train) - size]), np.sort(train[len(train) - size :])


def _refuse_overlap(dataset: Dataset, train: Rows, test: Rows, spec: str) -> None:
    data = dataset.interactions
    keys = data.pair_keys()
    shared = np.intersect1d(keys[train], keys[test])
    if len(shared):
        user, item = divmod(int(shared[0]), data.n_items)
        raise DeepMovieError(
            f"split {spec!r}: {len(shared):,} (user, item) pair(s) are in both train and test "
            f"(first: user {dataset.user_ids.raw[user]}, item {dataset.item_ids.raw[item]})"
        )


def _hash_rows(dataset: Dataset, rows: Rows) -> str:
    """A short digest of the test rows' raw (user, item) pairs, independent of row order."""
    data = dataset.interactions
    users = dataset.user_ids.raw[data.users[rows]].astype(str)
    items = dataset.item_ids.raw[data.items[rows]].astype(str)
    pairs = np.sort(np.char.add(np.char.add(users, "\t"), items))
    return hashlib.sha256("\n".join(pairs.tolist()).encode()).hexdigest()[:16]


@PROTOCOLS.register("random")
def random_split(
    dataset: Dataset, rng: np.random.Generator, test: str = "0.2", valid: str | None = None
) -> list[Fold]:
    """``random:TEST[:VALID]``: uniform random rows, fractions of all ratings."""
    n = len(dataset.interactions)
    order = rng.permutation(n)
    n_test = round(n * _fraction(test, "test"))
    if valid is None:
        return [Fold(np.sort(order[n_test:]), None, np.sort(order[:n_test]))]
    n_valid = round(n * _fraction(valid, "validation"))
    return [
        Fold(
            np.sort(order[n_test + n_valid :]),
            np.sort(order[n_test : n_test + n_valid]),
            np.sort(order[:n_test]),
        )
    ]


@PROTOCOLS.register("convmf")
def convmf_split(
    dataset: Dataset, rng: np.random.Generator, test: str = "0.1", valid: str = "0.1"
) -> list[Fold]:
    """``convmf``: 80/10/10 with every user and item keeping at least one training rating (ConvMF)."""
    data = dataset.interactions
    n = len(data)
    order = rng.permutation(n)
    # The first occurrence of each user and each item in a random order is pinned to train.
    _, first_user = np.unique(data.users[order], return_index=True)
    _, first_item = np.unique(data.items[order], return_index=True)
    pinned = np.zeros(n, dtype=bool)
    pinned[order[first_user]] = True
    pinned[order[first_item]] = True
    free = order[~pinned[order]]
    n_test = round(n * _fraction(test, "test"))
    n_valid = round(n * _fraction(valid, "validation"))
    if n_test + n_valid > len(free):
        raise ValueError("too few ratings to hold out that much while keeping every user and item")
    train = np.concatenate([np.flatnonzero(pinned), free[n_test + n_valid :]])
    return [Fold(np.sort(train), np.sort(free[n_test : n_test + n_valid]), np.sort(free[:n_test]))]


@PROTOCOLS.register("fold")
def canonical_fold(dataset: Dataset, rng: np.random.Generator, fold: str) -> list[Fold]:
    """``fold:u1``..``fold:u5``, ``fold:ua``, ``fold:ub``: ML-100K's own base/test files."""
    if fold not in {"u1", "u2", "u3", "u4", "u5", "ua", "ub"}:
        raise ValueError(f"unknown fold {fold!r} (u1..u5, ua, ub)")
    path = dataset.source.parent / f"{fold}.test"
    if not path.is_file():
        raise DeepMovieError(
            f"split 'fold:{fold}' needs {path.name} beside the ratings (ML-100K's canonical folds); "
            f"{dataset.source.parent} has none"
        )
    raw = read_ratings(path, sep="\t", header=False, encoding="latin-1")
    users = dataset.user_ids.index_of(raw.users)
    items = dataset.item_ids.index_of(raw.items)
    data = dataset.interactions
    keys = data.pair_keys()
    order = np.argsort(keys)
    wanted = users * data.n_items + items
    position = np.clip(np.searchsorted(keys[order], wanted), 0, len(keys) - 1)
    found = (users >= 0) & (items >= 0) & (keys[order][position] == wanted)
    if not found.all():
        line = int(np.flatnonzero(~found)[0]) + 1
        raise DeepMovieError(f"{path}:{line}: this rating is not in {dataset.source.name}")
    test = np.sort(order[position])
    return [Fold(np.setdiff1d(np.arange(len(data)), test), None, test)]


@PROTOCOLS.register("kfold")
def k_fold(dataset: Dataset, rng: np.random.Generator, k: str, only: str | None = None) -> list[Fold]:
    """``kfold:K[:I]``: K random folds (all of them, or only fold I)."""
    count, n = int(k), len(dataset.interactions)
    if not 2 <= count <= n:
        raise ValueError(f"K must be at least 2 and at most the {n:,} ratings")
    parts = np.array_split(rng.permutation(n), count)
    chosen = range(count) if only is None else [int(only)]
    if any(not 0 <= i < count for i in chosen):
        raise ValueError(f"fold {only} is not in 0..{count - 1}")
    return [
        Fold(np.sort(np.concatenate(parts[:i] + parts[i + 1 :])), None, np.sort(parts[i]), i) for i in chosen
    ]


@PROTOCOLS.register("temporal")
def temporal_split(dataset: Dataset, rng: np.random.Generator, test: str = "0.2") -> list[Fold]:
    """``temporal:TEST``: one global time cut; the latest TEST fraction of ratings is the test set."""
    data = dataset.interactions
    if data.timestamps is None:
        raise DeepMovieError(f"split 'temporal' needs timestamps, and {dataset.source} has none")
    order = np.argsort(data.timestamps, kind="stable")
    n_test = round(len(order) * _fraction(test, "test"))
    return [Fold(np.sort(order[:-n_test]), None, np.sort(order[-n_test:]))]


@PROTOCOLS.register("user-holdout")
def user_holdout(dataset: Dataset, rng: np.random.Generator, n: str = "10") -> list[Fold]:
    """``user-holdout:N``: N random ratings of every user who has more than N go to test."""
    holdout = int(n)
    if holdout < 1:
        raise ValueError("N must be at least 1")
    data = dataset.interactions
    order = np.lexsort((rng.random(len(data)), data.users))
    rank, counts = _rank_within_user(data.users[order])
    is_test = (rank < holdout) & (counts > holdout)
    return [Fold(np.sort(order[~is_test]), None, np.sort(order[is_test]))]


@PROTOCOLS.register("last")
def last_per_user(dataset: Dataset, rng: np.random.Generator, n: str = "1") -> list[Fold]:
    """``last:N``: each user's N latest ratings (by timestamp) go to test, for users with more than N."""
    data = dataset.interactions
    if data.timestamps is None:
        raise DeepMovieError(f"split 'last' needs timestamps, and {dataset.source} has none")
    holdout = int(n)
    if holdout < 1:
        raise ValueError("N must be at least 1")
    # Latest first within each user; ties in time broken at random (seeded).
    order = np.lexsort((rng.random(len(data)), -data.timestamps.astype(np.float64), data.users))
    rank, counts = _rank_within_user(data.users[order])
    is_test = (rank < holdout) & (counts > holdout)
    return [Fold(np.sort(order[~is_test]), None, np.sort(order[is_test]))]


@PROTOCOLS.register("users")
def held_out_users(
    dataset: Dataset, rng: np.random.Generator, n: str = "600", test: str = "0.2"
) -> list[Fold]:
    """``users:N[:TEST]``: strong generalization (Liang et al. 2018): N random users with at least 5
    ratings leave training entirely; a TEST fraction of each one's ratings is scored, the rest is
    folded in at test time without retraining (as serving a new user does)."""
    data = dataset.interactions
    count, fraction = int(n), _fraction(test, "test")
    eligible = np.flatnonzero(np.bincount(data.users, minlength=data.n_users) >= 5)
    if not 0 < count < len(eligible):
        raise ValueError(f"N={count}: between 1 and {len(eligible) - 1} users (of those with 5+ ratings)")
    held = np.isin(data.users, rng.choice(eligible, count, replace=False))
    rows = np.flatnonzero(held)
    order = rows[np.lexsort((rng.random(len(rows)), data.users[rows]))]
    rank, counts = _rank_within_user(data.users[order])
    is_test = rank < np.maximum(1, np.round(counts * fraction))
    return [Fold(np.flatnonzero(~held), None, np.sort(order[is_test]), None, np.sort(order[~is_test]))]


@PROTOCOLS.register("cold-items")
def cold_items(
    dataset: Dataset, rng: np.random.Generator, test: str = "0.1", valid: str | None = None
) -> list[Fold]:
    """``cold-items:TEST[:VALID]``: a TEST fraction of the rated items leaves training with all its
    ratings, so only side information (a document, genres) speaks for them: a catalogue's new
    releases. With VALID another fraction of items is held out the same way as validation (tuning and
    early stopping then judge cold items too); without it, validation rows are carved at random."""
    data = dataset.interactions
    rated = np.flatnonzero(np.bincount(data.items, minlength=data.n_items))
    shuffled = rng.permutation(rated)
    n_test = round(len(rated) * _fraction(test, "test"))
    n_valid = round(len(rated) * _fraction(valid, "validation")) if valid is not None else 0
    if n_test == 0 or n_test + n_valid >= len(rated):
        raise ValueError(f"{len(rated):,} rated items: too few to hold out those fractions of them")
    tested = np.isin(data.items, shuffled[:n_test])
    validated = np.isin(data.items, shuffled[n_test : n_test + n_valid])
    return [
        Fold(
            np.flatnonzero(~tested & ~validated),
            np.flatnonzero(validated) if valid is not None else None,
            np.flatnonzero(tested),
        )
    ]


def _rank_within_user(users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position of each row within its user's run, that user's row count) for rows grouped by user."""
    starts = np.r_[0, np.flatnonzero(users[1:] != users[:-1]) + 1]
    counts = np.diff(np.r_[starts, len(users)])
    return np.arange(len(users)) - np.repeat(starts, counts), np.repeat(counts, counts)


@PROTOCOLS.register("file")
def test_file_split(dataset: Dataset, rng: np.random.Generator) -> list[Fold]:
    """``--test-file PATH``: DATA holds the training rows, the file the test rows."""
    if dataset.test_rows is None:
        raise DeepMovieError("split 'file' needs --test-file PATH")
    n = len(dataset.interactions)
    return [Fold(np.setdiff1d(np.arange(n), dataset.test_rows), None, dataset.test_rows)]
