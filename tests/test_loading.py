"""The fast paths of loading: chunked parsing, the binary cache, O(n) duplicate handling."""

from __future__ import annotations

import numpy as np

from conftest import write_ratings
from deepmovie.data import dataset, readers
from deepmovie.data.dataset import ReadOptions, load_dataset


def test_chunked_parse_equals_one_pass(tmp_path, monkeypatch):
    path = write_ratings(tmp_path / "ratings.csv", n_users=50, n_items=60, density=0.5)
    whole = readers.read_ratings(path)
    monkeypatch.setattr(readers, "CHUNK", 997)  # many chunks, cut mid-line
    chunked = readers.read_ratings(path)
    assert len(chunked.ratings) == len(whole.ratings) == len(path.read_text().splitlines()) - 1
    for name in ("users", "items", "ratings", "timestamps"):
        np.testing.assert_array_equal(getattr(chunked, name), getattr(whole, name))


def test_binary_cache_returns_the_same_dataset(tmp_path, monkeypatch, deepmovie_home):
    path = write_ratings(tmp_path / "ratings.csv", n_users=40, n_items=30, density=0.5)
    monkeypatch.setattr(dataset, "CACHE_MIN_ROWS", 1)
    first = load_dataset(path)
    assert any((deepmovie_home / "cache").iterdir())
    monkeypatch.setattr(readers, "read_ratings", None)  # a second parse would now fail
    second = load_dataset(path)
    for name in ("users", "items", "ratings", "timestamps"):
        np.testing.assert_array_equal(getattr(second.interactions, name), getattr(first.interactions, name))
    np.testing.assert_array_equal(second.user_ids.raw, first.user_ids.raw)


def test_a_cache_another_process_wrote_first_is_no_failure(tmp_path, monkeypatch, caplog, deepmovie_home):
    """Two runs loading the same file at once: the loser of the rename keeps quiet and leaves no debris."""
    path = write_ratings(tmp_path / "ratings.csv", n_users=40, n_items=30, density=0.5)
    monkeypatch.setattr(dataset, "CACHE_MIN_ROWS", 1)
    first = load_dataset(path)
    (folder,) = (deepmovie_home / "cache").iterdir()
    dataset._write_cache(folder, dataset._read_and_encode([path], ReadOptions()))  # the second writer
    assert "could not write the load cache" not in caplog.text
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]
    assert len(load_dataset(path).interactions) == len(first.interactions)


def test_cache_is_invalidated_when_the_file_changes(tmp_path, monkeypatch):
    path = write_ratings(tmp_path / "ratings.csv", n_users=40, n_items=30, density=0.5)
    monkeypatch.setattr(dataset, "CACHE_MIN_ROWS", 1)
    before = len(load_dataset(path).interactions)
    path.write_text("\n".join(path.read_text().splitlines()[:-5]) + "\n")
    assert len(load_dataset(path).interactions) == before - 5


def test_duplicates_keep_latest_then_last_in_unsorted_files(tmp_path, caplog):
    path = tmp_path / "ratings.csv"
    path.write_text(
        "user,item,rating,timestamp\n2,1,1,10\n1,1,2,50\n1,1,3,90\n2,2,4,5\n1,1,4,90\n2,1,5,9\n3,3,2,1\n"
    )
    data = load_dataset(path)
    got = {
        (int(data.user_ids.raw[u]), int(data.item_ids.raw[i])): float(r)
        for u, i, r in zip(
            data.interactions.users, data.interactions.items, data.interactions.ratings, strict=True
        )
    }
    # (1,1): timestamps 50, 90, 90 -> the last of the two latest (rating 4); (2,1): 10 beats 9.
    assert got == {(1, 1): 4.0, (2, 1): 1.0, (2, 2): 4.0, (3, 3): 2.0}
    assert "3 duplicate" in caplog.text
