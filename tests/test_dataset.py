"""Datasets with side information: real MovieLens folders, item documents, test files and the cache."""

from __future__ import annotations

import re

import numpy as np
import pytest

from conftest import shared_data, write_ratings
from deepmovie.data import dataset as dataset_module
from deepmovie.data.dataset import load_dataset
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
