"""Datasets with side information: real MovieLens folders, item documents, test files and the cache."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pytest

from conftest import shared_data, write_ratings
from deepmovie.data import dataset as dataset_module
from deepmovie.data.dataset import Dataset, ReadOptions, load_dataset
from deepmovie.data.interactions import RatingScale
from deepmovie.errors import DeepMovieError


def raw_pairs(dataset, rows=None) -> list[tuple]:
    data = dataset.interactions
    rows = np.arange(len(data)) if rows is None else rows
    users = dataset.user_ids.to_raw(data.users[rows]).tolist()
    items = dataset.item_ids.to_raw(data.items[rows]).tolist()
    return list(zip(users, items, data.ratings[rows].tolist(), strict=True))


def item_index(dataset, raw) -> int:
    return int(dataset.item_ids.index_of(np.array([raw]))[0])


def test_ml100k_side_information():
    dataset = load_dataset(shared_data("ml-100k"))
    assert dataset.layout == "ml-100k"
    assert (len(dataset.interactions), dataset.n_users, dataset.n_items) == (100_000, 943, 1682)
    items = dataset.items
    assert items.genres.shape == (1682, 18) and items.genres.dtype == np.uint8
    assert set(np.unique(items.genres).tolist()) == {0, 1}
    assert (items.genres.sum(1) > 1).sum() > 500  # multi-hot: many films have several genres
    toy = item_index(dataset, 1)
    assert items.titles[toy] == "Toy Story (1995)"
    assert [items.genre_names[g] for g in np.flatnonzero(items.genres[toy])] == [
        "Animation",
        "Children's",
        "Comedy",
    ]
    known = items.years[items.years > 0]
    assert items.years[toy] == 1995 and known.min() >= 1920 and known.max() <= 1998
    assert items.listed.all() and "Genres: Animation, Children's, Comedy." in items.documents[toy]
    users = dataset.users
    assert set(users.fields) == {"gender", "age", "occupation", "zip_prefix"}
    first = int(dataset.user_ids.index_of(np.array([1]))[0])  # 1|24|M|technician|85711
    decoded = {name: vocab[codes[first]] for name, (codes, vocab) in users.fields.items()}
    assert decoded == {"gender": "M", "age": "18", "occupation": "technician", "zip_prefix": "85"}
    assert all((codes > 0).all() for codes, _ in users.fields.values())  # every user is listed


def test_ml1m_folder():
    dataset = load_dataset(shared_data("ml-1m"))
    data = dataset.interactions
    assert (len(data), dataset.n_users, dataset.n_items) == (1_000_209, 6_040, 3_706)
    assert data.timestamps is None  # this copy has none
    assert (dataset.scale.low, dataset.scale.high) == (1.0, 5.0)
    toy = item_index(dataset, 1)
    assert dataset.items.titles[toy] == "Toy Story (1995)" and dataset.items.years[toy] == 1995
    genres = [dataset.items.genre_names[g] for g in np.flatnonzero(dataset.items.genres[toy])]
    assert genres == ["Animation", "Children's", "Comedy"]
    codes, vocab = dataset.users.fields["age"]
    assert vocab[codes[0]] == "1" and vocab[1:] == ["1", "18", "25", "35", "45", "50", "56"]


def test_bundled_latest_small_has_tags_in_documents():
    dataset = load_dataset("ml-latest-small")
    assert dataset.layout == "ml-latest"
    toy = item_index(dataset, 1)
    assert dataset.items.titles[toy] == "Toy Story (1995)"
    assert "pixar" in dataset.items.tags[toy]
    assert "Tags: " in dataset.items.documents[toy] and "pixar" in dataset.items.documents[toy]
    assert sum(bool(t) for t in dataset.items.tags) > 1000


def test_item_docs_replace_documents(tmp_path):
    docs = tmp_path / "plots.txt"
    docs.write_text("1::A toy cowboy feels replaced.\n\n2:: A board game comes alive. \n999999999::unknown\n")
    plain = load_dataset("ml-latest-small")
    dataset = load_dataset("ml-latest-small", item_docs=docs)
    toy, jumanji, other = item_index(dataset, 1), item_index(dataset, 2), item_index(dataset, 3)
    assert dataset.items.documents[toy] == "A toy cowboy feels replaced."
    assert dataset.items.documents[jumanji] == "A board game comes alive."
    assert dataset.items.documents[other] == plain.items.documents[other]  # items not named: unchanged
    bad = tmp_path / "bad.txt"
    bad.write_text("1::fine\n2 no separator\n")
    with pytest.raises(DeepMovieError, match=re.escape(f"{bad}:2:")):
        load_dataset("ml-latest-small", item_docs=bad)


def test_item_docs_need_item_metadata(tmp_path):
    ratings = write_ratings(tmp_path / "r.csv")
    docs = tmp_path / "plots.txt"
    docs.write_text("1::text\n")
    with pytest.raises(DeepMovieError, match="item metadata"):
        load_dataset(ratings, item_docs=docs)


def test_side_files_align_to_indices(tmp_path):
    """Metadata rows in another order than the ratings, with unrated items, land on the right index."""
    folder = tmp_path / "ml"
    folder.mkdir()
    (folder / "ratings.csv").write_text("userId,movieId,rating\n7,30,4\n8,10,3.5\n7,10,5\n")
    (folder / "movies.csv").write_text(
        "movieId,title,genres\n"
        "10,Ten (2001),Drama\n"
        "20,Twenty (2002),Comedy\n"
        '30,"Thirty, The (2003)",Comedy|Drama\n'
    )
    dataset = load_dataset(folder)
    assert dataset.layout == "ml-latest" and dataset.n_items == 2
    thirty, ten = item_index(dataset, 30), item_index(dataset, 10)
    assert dataset.items.titles[thirty] == "Thirty, The (2003)" and dataset.items.years[thirty] == 2003
    assert dataset.items.titles[ten] == "Ten (2001)" and dataset.items.years[ten] == 2001
    names = dataset.items.genre_names
    assert sorted(names[g] for g in np.flatnonzero(dataset.items.genres[thirty])) == ["Comedy", "Drama"]
    assert [names[g] for g in np.flatnonzero(dataset.items.genres[ten])] == ["Drama"]


def test_test_file_rows_kept_apart(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text("user,item,rating\n1,1,4\n1,2,3\n2,1,5\n")
    test = tmp_path / "test.csv"
    # Text ids make both files text; a repeated pair in the test file keeps its last row.
    test.write_text("user,item,rating\n2,2,1\nnew,3,2\n2,2,4\n")
    dataset = load_dataset(train, test_file=test)
    assert dataset.test_rows.tolist() == [3, 4]
    assert raw_pairs(dataset, dataset.test_rows) == [("new", "3", 2.0), ("2", "2", 4.0)]
    assert raw_pairs(dataset, np.arange(3)) == [("1", "1", 4.0), ("1", "2", 3.0), ("2", "1", 5.0)]


def test_load_cache_gives_the_same_data_and_notices_edits(tmp_path, monkeypatch, deepmovie_home):
    monkeypatch.setattr(dataset_module, "CACHE_MIN_ROWS", 1)
    path = write_ratings(tmp_path / "r.csv")
    first = load_dataset(path)
    assert list((deepmovie_home / "cache").iterdir())
    second = load_dataset(path)
    assert raw_pairs(second) == raw_pairs(first)
    np.testing.assert_array_equal(second.interactions.timestamps, first.interactions.timestamps)
    path.write_text(path.read_text() + "99,99,1,5000\n")
    third = load_dataset(path)
    assert len(third.interactions) == len(first.interactions) + 1


def test_unknown_dataset_name_or_path():
    with pytest.raises(DeepMovieError, match="not a dataset name"):
        load_dataset("ml-does-not-exist")


def test_named_release_not_downloaded():
    with pytest.raises(DeepMovieError, match="deepmovie fetch ml-1m"):
        load_dataset("ml-1m")  # DEEPMOVIE_HOME is a fresh folder in tests


def test_folder_without_ratings(tmp_path):
    with pytest.raises(DeepMovieError, match=re.escape(f"{tmp_path}: no ratings file")):
        load_dataset(tmp_path)


# --- Datasets built from data in memory -------------------------------------------------------------


@pytest.fixture
def pd():
    """pandas is a dev extra, not a dependency: skip only these tests where it is absent."""
    return pytest.importorskip("pandas")


def test_from_pandas_round_trip_keeps_raw_ids(pd):
    big = 2**62 + 7  # above 2**53: any trip through float would change it
    df = pd.DataFrame(
        {
            "user": ["bob", "amy", "bob", "cy"],
            "item": [big, 3, 3, big + 1],
            "rating": [4.5, 2.0, 3.0, 5.0],
            "extra": [object(), None, 1, "x"],  # an unused column Arrow could not convert
        }
    )
    dataset = Dataset.from_pandas(df)
    assert (dataset.name, dataset.layout, dataset.test_rows) == ("dataframe", "memory", None)
    assert dataset.items is None and dataset.users is None
    assert not dataset.source.parent.exists()  # no files beside in-memory data (fold files, say)
    assert dataset.item_ids.raw.dtype == np.int64 and dataset.user_ids.raw.dtype.kind == "U"
    assert raw_pairs(dataset) == [("bob", big, 4.5), ("amy", 3, 2.0), ("bob", 3, 3.0), ("cy", big + 1, 5.0)]
    data = dataset.interactions
    assert (data.n_users, data.n_items) == (3, 3) and data.ratings.dtype == np.float32
    assert data.users.tolist() == dataset.user_ids.index_of(np.array(["bob", "amy", "bob", "cy"])).tolist()
    assert data.items.tolist() == dataset.item_ids.index_of(np.array([big, 3, 3, big + 1])).tolist()
    assert (dataset.scale.low, dataset.scale.high, dataset.scale.step) == (2.0, 5.0, 0.5)


def test_from_arrow_keeps_integer_ids_and_converts_whole_floats():
    table = pa.table(
        {
            "u": pa.array([1, 2**63 - 1], pa.uint64()),
            "i": pa.array([10.0, -3.0]),
            "r": pa.array([1, 5], pa.int8()),
            "t": pa.array([0, 86_400_000], pa.timestamp("ms")),
        }
    )
    dataset = Dataset.from_arrow(table, user="u", item="i", rating="r", timestamp="t", name="mine")
    assert dataset.name == "mine" and dataset.user_ids.raw.dtype == np.int64
    assert raw_pairs(dataset) == [(1, 10, 1.0), (2**63 - 1, -3, 5.0)]
    assert dataset.interactions.timestamps.tolist() == [0, 86_400]  # seconds, as files give them


def test_from_pandas_drops_duplicates_keeping_the_latest(pd, caplog):
    df = pd.DataFrame(
        {
            "user": [1, 1, 2, 1],
            "item": [7, 8, 7, 7],
            "rating": [1.0, 2.0, 3.0, 4.0],
            "time": [300, 100, 100, 200],  # the repeated (1, 7): the first row is the latest
        }
    )
    dataset = Dataset.from_pandas(df, timestamp="time")
    assert raw_pairs(dataset) == [(1, 7, 1.0), (1, 8, 2.0), (2, 7, 3.0)]
    assert dataset.interactions.timestamps.tolist() == [300, 100, 100]
    assert "1 duplicate (user, item) row(s) dropped, keeping the latest" in caplog.text
    untimed = Dataset.from_pandas(df)
    assert raw_pairs(untimed) == [(1, 8, 2.0), (2, 7, 3.0), (1, 7, 4.0)]  # without time: the last


BAD_INPUTS = {
    "missing column": ({"user": [1], "item": [2], "score": [3.0]}, {}, r"no column 'rating'.*'score'"),
    "null id": ({"user": [1, None], "item": [2, 3], "rating": [3.0, 4.0]}, {}, r"'user', row 1: missing"),
    "NaN rating": ({"user": [1, 2], "item": [2, 3], "rating": [3.0, np.nan]}, {}, r"'rating', row 1"),
    "inf rating": ({"user": [1, 2], "item": [2, 3], "rating": [np.inf, 1.0]}, {}, r"'rating', row 0: .*inf"),
    "text rating": (
        {"user": [1, 2], "item": [2, 3], "rating": ["4", "good"]},
        {},
        r"'rating', row 1: .*'good'",
    ),
    "mixed rating": ({"user": [1, 2], "item": [2, 3], "rating": [4, "x"]}, {}, r"'rating', row 1"),
    "out of scale": (
        {"user": [1, 2, 3], "item": [2, 3, 4], "rating": [3.0, 5.0, 9.0]},
        {"scale": (1, 5)},
        r"'rating', row 2: rating 9 is outside 1\.\.5",
    ),
    "fractional id": ({"user": [1.0, 2.5], "item": [2, 3], "rating": [3.0, 4.0]}, {}, r"'user', row 1"),
    "float id past 2**53": (
        {"user": [1, 2], "item": [2.0, 2.0**60], "rating": [3.0, 4.0]},
        {},
        r"'item', row 1: .*2\*\*53",
    ),
    "uint64 past int64": (
        {"user": np.array([1, 2**64 - 1], np.uint64), "item": [2, 3], "rating": [3.0, 4.0]},
        {},
        r"'user', row 1: user id 18446744073709551615 does not fit int64",
    ),
    "missing timestamp": (
        {"user": [1, 2], "item": [2, 3], "rating": [3.0, 4.0], "ts": [5.0, None]},
        {"timestamp": "ts"},
        r"'ts', row 1: missing timestamp",
    ),
    "empty": ({"user": [], "item": [], "rating": []}, {}, r"the table is empty"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_from_pandas_refuses_bad_input(pd, case):
    columns, options, message = BAD_INPUTS[case]
    with pytest.raises(DeepMovieError, match=message):
        Dataset.from_pandas(pd.DataFrame(columns), **options)


def test_from_arrow_refuses_nan_and_from_pandas_needs_a_dataframe(pd):
    table = pa.table({"user": [1, 2], "item": [2, 3], "rating": [3.0, float("nan")]})  # NaN, not null
    with pytest.raises(DeepMovieError, match=r"table: column 'rating', row 1: rating nan"):
        Dataset.from_arrow(table)
    with pytest.raises(DeepMovieError, match="expected a pandas DataFrame, got Table"):
        Dataset.from_pandas(table)


def test_from_path_equals_load_dataset(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating,timestamp\n7,a,4,100\n8,b,2,200\n7,b,5,300\n7,a,1,50\n")
    dataset, expected = Dataset.from_path(path), load_dataset(path)
    assert (dataset.name, dataset.source, dataset.layout) == (expected.name, expected.source, expected.layout)
    assert raw_pairs(dataset) == raw_pairs(expected) == [(7, "a", 4.0), (8, "b", 2.0), (7, "b", 5.0)]
    np.testing.assert_array_equal(dataset.interactions.timestamps, expected.interactions.timestamps)
    assert dataset.scale == expected.scale == RatingScale(2.0, 5.0, 1.0)
    declared = Dataset.from_path(path, sep=",", header=True, scale=(1, 5))
    assert (
        declared.scale
        == load_dataset(path, options=ReadOptions(",", None, True, "utf-8", RatingScale(1, 5, 0))).scale
    )
    with pytest.raises(DeepMovieError, match=re.escape(f"{path}:3: rating 2 is outside 3..5")):
        Dataset.from_path(path, scale=(3, 5))
