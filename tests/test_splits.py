"""Evaluation protocols: disjoint, complete, seeded partitions of the right sizes, and refused bad specs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import shared_data, write_ratings
from deepmovie.data.dataset import load_dataset
from deepmovie.data.readers import read_ratings
from deepmovie.errors import DeepMovieError
from deepmovie.splits import make_splits


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = write_ratings(tmp_path_factory.mktemp("splits") / "r.csv", n_users=40, n_items=50, density=0.3)
    return load_dataset(path)


def keys(part, dataset) -> np.ndarray:
    return part.users.astype(np.int64) * dataset.n_items + part.items


def assert_partition(split, dataset) -> None:
    """Train, valid and test are disjoint and together are every rating, exactly once."""
    parts = [keys(p, dataset) for p in (split.train, split.valid, split.test)]
    every = np.concatenate(parts)
    assert len(np.unique(every)) == len(every) == len(dataset.interactions)
    np.testing.assert_array_equal(np.sort(every), np.sort(keys(dataset.interactions, dataset)))
    assert len(split.test) > 0 and len(split.train) > 0


def raw_pairs(dataset, part) -> set[tuple]:
    users = dataset.user_ids.to_raw(part.users).tolist()
    items = dataset.item_ids.to_raw(part.items).tolist()
    return set(zip(users, items, strict=True))


SPECS = [
    "random:0.2",
    "random:0.2:0.1",
    "convmf",
    "kfold:5",
    "kfold:4:1",
    "temporal:0.25",
    "user-holdout:2",
    "last:2",
]


@pytest.mark.parametrize("spec", SPECS)
def test_every_protocol_partitions_all_rows(dataset, spec):
    splits = make_splits(dataset, spec, seed=3)
    for split in splits:
        assert_partition(split, dataset)
        assert split.record() == {
            "split": spec,
            "seed": 3,
            "fold": split.fold,
            "split_hash": split.test_hash,
        }


@pytest.mark.parametrize("spec", SPECS)
def test_seeded_determinism(dataset, spec):
    a, b = make_splits(dataset, spec, seed=5), make_splits(dataset, spec, seed=5)
    other = make_splits(dataset, spec, seed=6)
    assert [s.test_hash for s in a] == [s.test_hash for s in b]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(keys(x.valid, dataset), keys(y.valid, dataset))
        np.testing.assert_array_equal(keys(x.test, dataset), keys(y.test, dataset))
    if spec.startswith(("temporal", "last")):  # cut by time: only the validation rows depend on the seed
        assert [s.test_hash for s in other] == [s.test_hash for s in a]
    else:
        assert [s.test_hash for s in other] != [s.test_hash for s in a]


def test_random_sizes_and_valid_from_train(dataset):
    n = len(dataset.interactions)
    (split,) = make_splits(dataset, "random:0.2", valid_fraction=0.1)
    n_test = round(n * 0.2)
    assert len(split.test) == n_test and len(split.valid) == round((n - n_test) * 0.1)
    (split,) = make_splits(dataset, "random:0.2:0.15", valid_fraction=0.5)  # VALID is of all rows
    assert (len(split.test), len(split.valid)) == (round(n * 0.2), round(n * 0.15))
    (split,) = make_splits(dataset, "random:0.2", valid_fraction=0)
    assert len(split.valid) == 0 and len(split.train) == n - n_test


def test_valid_carved_from_train_leaves_test_alone(dataset):
    (plain,) = make_splits(dataset, "kfold:5:0", seed=1, valid_fraction=0)
    (carved,) = make_splits(dataset, "kfold:5:0", seed=1, valid_fraction=0.3)
    np.testing.assert_array_equal(keys(plain.test, dataset), keys(carved.test, dataset))
    assert plain.test_hash == carved.test_hash
    carved_train = np.concatenate([keys(carved.train, dataset), keys(carved.valid, dataset)])
    np.testing.assert_array_equal(np.sort(carved_train), np.sort(keys(plain.train, dataset)))


def test_convmf_keeps_every_user_and_item_in_train(tmp_path):
    # A long tail: most items have one to three ratings, so a plain 80/10/10 would lose many.
    path = write_ratings(tmp_path / "tail.csv", n_users=40, n_items=300, density=0.05)
    sparse = load_dataset(path)
    n = len(sparse.interactions)
    assert (sparse.interactions.item_counts() == 1).sum() > 30
    for seed in range(3):
        (split,) = make_splits(sparse, "convmf", seed=seed)
        assert_partition(split, sparse)
        assert (split.train.user_counts() > 0).all() and (split.train.item_counts() > 0).all()
        assert (len(split.test), len(split.valid)) == (round(n * 0.1), round(n * 0.1))


def test_kfold_tests_cover_the_data_once(dataset):
    folds = make_splits(dataset, "kfold:5", seed=2)
    assert [s.fold for s in folds] == [0, 1, 2, 3, 4]
    tests = np.concatenate([keys(s.test, dataset) for s in folds])
    np.testing.assert_array_equal(np.sort(tests), np.sort(keys(dataset.interactions, dataset)))
    sizes = [len(s.test) for s in folds]
    assert max(sizes) - min(sizes) <= 1
    (only,) = make_splits(dataset, "kfold:5:3", seed=2)
    assert only.test_hash == folds[3].test_hash and only.fold == 3


def test_temporal_test_is_later_than_train(dataset):
    (split,) = make_splits(dataset, "temporal:0.25", seed=0)
    assert len(split.test) == round(len(dataset.interactions) * 0.25)
    assert split.test.timestamps.min() > split.train.timestamps.max()
    assert split.test.timestamps.min() > split.valid.timestamps.max()
    assert split.valid.timestamps.min() >= split.train.timestamps.max()  # valid: the latest training rows


def test_temporal_needs_timestamps(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating\n1,1,4\n1,2,3\n2,1,5\n2,2,1\n")
    with pytest.raises(DeepMovieError, match="timestamps"):
        make_splits(load_dataset(path), "temporal:0.5")


def test_user_holdout_holds_n_per_eligible_user(dataset):
    held = 12  # users have 8..22 ratings here
    (split,) = make_splits(dataset, f"user-holdout:{held}", seed=0)
    totals = dataset.interactions.user_counts()
    in_test = split.test.user_counts()
    np.testing.assert_array_equal(in_test, np.where(totals > held, held, 0))
    assert (totals <= held).any() and (totals > held).any()  # both kinds of user are exercised


def test_last_n_holds_each_users_latest_ratings(dataset):
    held = 12  # users have 8..22 ratings here
    (split,) = make_splits(dataset, f"last:{held}", seed=0)
    totals = dataset.interactions.user_counts()
    np.testing.assert_array_equal(split.test.user_counts(), np.where(totals > held, held, 0))
    rest = split.train.concat(split.valid)
    for user in np.unique(split.test.users):
        latest_kept = rest.timestamps[rest.users == user].max()
        assert split.test.timestamps[split.test.users == user].min() >= latest_kept


def test_users_n_holds_whole_users_out_and_splits_their_ratings(dataset):
    (split,) = make_splits(dataset, "users:8", seed=4)
    held = np.unique(split.test.users)
    assert len(held) == 8 and split.strong
    assert not np.isin(split.train.users, held).any() and not np.isin(split.valid.users, held).any()
    np.testing.assert_array_equal(np.unique(split.fold_in.users), held)
    everything = [keys(p, dataset) for p in (split.train, split.valid, split.test, split.fold_in)]
    joined = np.concatenate(everything)
    assert len(np.unique(joined)) == len(joined) == len(dataset.interactions)
    totals = dataset.interactions.user_counts()[held]
    np.testing.assert_array_equal(split.test.user_counts()[held], np.maximum(1, np.round(totals * 0.2)))
    (again,) = make_splits(dataset, "users:8", seed=4)
    assert again.test_hash == split.test_hash
    assert make_splits(dataset, "users:8", seed=5)[0].test_hash != split.test_hash


@pytest.mark.parametrize("spec", ["cold-items:0.2", "cold-items:0.2:0.1"])
def test_cold_items_hold_whole_items_out_of_training(dataset, spec):
    (split,) = make_splits(dataset, spec, seed=3)
    tested = np.unique(split.test.items)
    rated = np.unique(dataset.interactions.items)
    assert len(tested) == round(0.2 * len(rated))
    assert not np.isin(split.train.items, tested).any() and not np.isin(split.valid.items, tested).any()
    np.testing.assert_array_equal(  # every rating of a held-out item is a test row
        np.bincount(split.test.items, minlength=dataset.n_items)[tested],
        np.bincount(dataset.interactions.items, minlength=dataset.n_items)[tested],
    )
    joined = np.concatenate([keys(p, dataset) for p in (split.train, split.valid, split.test)])
    assert len(np.unique(joined)) == len(joined) == len(dataset.interactions)
    if spec.count(":") == 2:  # validation: items of their own, cold too
        validated = np.unique(split.valid.items)
        assert len(validated) == round(0.1 * len(rated)) and not np.isin(split.train.items, validated).any()
    else:  # validation: random training rows, of items that stay in training
        assert np.isin(split.valid.items, split.train.items).mean() > 0.9
    assert make_splits(dataset, spec, seed=3)[0].test_hash == split.test_hash


def test_file_split_uses_the_test_file(tmp_path):
    train = write_ratings(tmp_path / "train.csv", n_users=10, n_items=12, density=0.6, seed=1)
    rows = train.read_text().splitlines()
    train.write_text("\n".join(rows[:-5]) + "\n")
    test = tmp_path / "test.csv"
    test.write_text("\n".join([rows[0], *rows[-5:]]) + "\n")
    dataset = load_dataset(train, test_file=test)
    (split,) = make_splits(dataset, "file", valid_fraction=0.2)
    assert len(split.test) == 5
    assert raw_pairs(dataset, split.test) == {tuple(int(v) for v in r.split(",")[:2]) for r in rows[-5:]}
    assert_partition(split, dataset)


def test_overlap_between_train_and_test_files_is_refused(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text("user,item,rating\n1,1,4\n1,2,3\n2,1,5\n")
    test = tmp_path / "test.csv"
    test.write_text("user,item,rating\n2,2,4\n2,1,3\n")
    dataset = load_dataset(train, test_file=test)
    with pytest.raises(DeepMovieError, match=r"both train and test \(first: user 2, item 1\)"):
        make_splits(dataset, "file")
    with pytest.raises(DeepMovieError, match="--test-file"):
        make_splits(load_dataset(train), "file")


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("random:2", "test fraction 2"),
        ("random:0", "test fraction 0"),
        ("random:abc", "random:abc"),
        ("nope", "unknown split 'nope'"),
        ("kfold:1", "at least 2"),
        ("kfold:5:5", "fold 5 is not in 0..4"),
        ("kfold:x", "kfold:x"),
        ("user-holdout:0", "at least 1"),
        ("last:0", "at least 1"),
        ("users:0", "between 1 and"),
        ("users:4000", "between 1 and"),
        ("users:5:1.5", "not between 0 and 1"),
        ("cold-items:0", "not between 0 and 1"),
        ("cold-items:0.6:0.5", "too few to hold out"),
        ("convmf:0.6:0.6", "too few ratings"),
        ("fold:u9", "unknown fold"),
        ("fold:u1", "u1.test"),
        ("random:0.1:0.1:0.1", "random:0.1:0.1:0.1"),
    ],
)
def test_bad_specs(dataset, spec, words):
    with pytest.raises(DeepMovieError, match=words):
        make_splits(dataset, spec)


def test_bad_valid_fraction(dataset):
    with pytest.raises(DeepMovieError, match="valid_fraction"):
        make_splits(dataset, "random:0.2", valid_fraction=1.0)


@pytest.fixture(scope="module")
def ml100k():
    return load_dataset(shared_data("ml-100k"))


@pytest.mark.parametrize("fold", ["u1", "u2", "u3", "u4", "u5", "ua", "ub"])
def test_canonical_folds_match_the_files(ml100k, fold):
    folder = Path(ml100k.source).parent
    (split,) = make_splits(ml100k, f"fold:{fold}", valid_fraction=0)
    expected = read_ratings(folder / f"{fold}.test", sep="\t", header=False)
    pairs = set(zip(expected.users.tolist(), expected.items.tolist(), strict=True))
    size = 20_000 if fold[1].isdigit() else 9_430
    assert len(split.test) == len(pairs) == size
    assert raw_pairs(ml100k, split.test) == pairs
    assert len(split.train) == 100_000 - size and len(split.valid) == 0
    assert_partition(split, ml100k)


def test_canonical_fold_valid_comes_from_base(ml100k):
    (split,) = make_splits(ml100k, "fold:u1", valid_fraction=0.1)
    assert (len(split.train), len(split.valid), len(split.test)) == (72_000, 8_000, 20_000)
    assert_partition(split, ml100k)
    assert split.test_hash == make_splits(ml100k, "fold:u1", seed=9)[0].test_hash
