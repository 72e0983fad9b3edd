"""Ratings readers: every format and layout, id maps, and bad input that names the file and line."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import shared_data, write_ratings
from deepmovie.data import readers
from deepmovie.data.dataset import ReadOptions, load_dataset
from deepmovie.data.interactions import IdMap, RatingScale
from deepmovie.data.readers import read_ratings
from deepmovie.errors import DeepMovieError

GENRES = ["unknown", "Action", "Comedy", "Drama"]


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def error_of(call, *args, **kwargs) -> str:
    with pytest.raises(DeepMovieError) as info:
        call(*args, **kwargs)
    return str(info.value)


def ml100k_folder(folder: Path, ratings: str, items=(1, 2, 3)) -> Path:
    """A folder in ML-100K's layout: u.data (tab-separated, no header), u.item and u.genre."""
    folder.mkdir(parents=True, exist_ok=True)
    write(folder / "u.data", ratings)
    write(folder / "u.genre", "".join(f"{g}|{i}\n" for i, g in enumerate(GENRES)))
    rows = [f"{i}|Movie {i} (199{i})|01-Jan-199{i}||http://x|0|1|{i % 2}|1\n" for i in items]
    write(folder / "u.item", "".join(rows))
    return folder


@pytest.fixture
def small_csv(tmp_path) -> Path:
    return write_ratings(tmp_path / "ratings.csv", n_users=12, n_items=15, density=0.4)


def reference_rows(path: Path) -> list[list[float]]:
    return [[float(x) for x in line.split(",")] for line in path.read_text().splitlines()[1:]]


def assert_same_rows(raw, rows: list[list[float]], timestamps: bool = True) -> None:
    table = np.array(rows)
    np.testing.assert_array_equal(raw.users, table[:, 0].astype(np.int64))
    np.testing.assert_array_equal(raw.items, table[:, 1].astype(np.int64))
    np.testing.assert_array_equal(raw.ratings, table[:, 2].astype(np.float32))
    if timestamps:
        np.testing.assert_array_equal(raw.timestamps, table[:, 3].astype(np.int64))
    else:
        assert raw.timestamps is None


# --- formats ---------------------------------------------------------------------------------------


def test_csv_with_header(small_csv):
    raw = read_ratings(small_csv)
    assert raw.header_lines == 1
    assert raw.users.dtype.kind == "i" and raw.ratings.dtype == np.float32
    assert_same_rows(raw, reference_rows(small_csv))


def test_tsv_without_header(small_csv, tmp_path):
    rows = reference_rows(small_csv)
    path = write(tmp_path / "ratings.tsv", "".join("\t".join(f"{v:g}" for v in r) + "\n" for r in rows))
    raw = read_ratings(path)
    assert raw.header_lines == 0  # the first line is a rating, not a header
    assert_same_rows(raw, rows)


def test_double_colon_file(small_csv, tmp_path):
    rows = reference_rows(small_csv)
    path = write(tmp_path / "ratings.dat", "".join("::".join(f"{v:g}" for v in r) + "\n" for r in rows))
    assert_same_rows(read_ratings(path), rows)
    three = write(tmp_path / "three.dat", "".join("::".join(f"{v:g}" for v in r[:3]) + "\n" for r in rows))
    assert_same_rows(read_ratings(three), rows, timestamps=False)


def test_parquet(small_csv, tmp_path):
    rows = np.array(reference_rows(small_csv))
    table = pa.table(
        {
            "userId": rows[:, 0].astype(np.int64),
            "movieId": rows[:, 1].astype(np.int64),
            "rating": rows[:, 2],
            "timestamp": rows[:, 3].astype(np.int64),
        }
    )
    path = tmp_path / "ratings.parquet"
    pq.write_table(table, path)
    raw = read_ratings(path)
    assert_same_rows(raw, rows.tolist())
    assert raw.line_of(0) is None  # Parquet has rows, not lines
    dataset = load_dataset(path)
    assert len(dataset.interactions) == len(rows)


def test_header_detected_or_absent(tmp_path):
    with_header = write(tmp_path / "a.csv", "user,item,rating\n1,10,4\n2,20,3\n")
    without = write(tmp_path / "b.csv", "1,10,4\n2,20,3\n")
    assert len(read_ratings(with_header).ratings) == 2
    raw = read_ratings(without)
    assert raw.header_lines == 0 and raw.users.tolist() == [1, 2]  # the first row is kept
    quoted = write(tmp_path / "c.csv", '"user","item","rating"\n1,10,4\n')
    assert read_ratings(quoted).ratings.tolist() == [4.0]
    # Told there is no header, the header line is a row whose rating is not a number.
    message = error_of(read_ratings, with_header, header=False)
    assert f"{with_header}:1:" in message and "'rating'" in message


def test_header_after_blank_lines(tmp_path):
    path = write(tmp_path / "a.csv", "\n\nuser,item,rating\n1,10,4\n2,20,3.5\n")
    raw = read_ratings(path)
    assert raw.users.tolist() == [1, 2] and raw.ratings.tolist() == [4.0, 3.5]
    bad = write(tmp_path / "b.csv", "\n\nuser,item,rating\n1,10,4\n2,20,x\n")
    assert f"{bad}:5:" in error_of(read_ratings, bad)  # lines are counted from the top of the file


def test_columns_named_by_user(tmp_path):
    path = write(tmp_path / "r.csv", "when,score,mid,uid\n100,4,m1,alice\n200,3,m2,bob\n")
    raw = read_ratings(path, columns={"user": "uid", "item": "mid", "rating": "score", "timestamp": "when"})
    assert raw.users.tolist() == ["alice", "bob"]
    assert raw.items.tolist() == ["m1", "m2"]
    assert raw.ratings.tolist() == [4.0, 3.0]
    assert raw.timestamps.tolist() == [100, 200]
    positional = write(tmp_path / "p.csv", "4,10,1\n3,20,2\n")
    raw = read_ratings(positional, columns={"user": "2", "item": "1", "rating": "0"})
    assert (raw.users.tolist(), raw.items.tolist(), raw.ratings.tolist()) == ([1, 2], [10, 20], [4.0, 3.0])
    message = error_of(read_ratings, path, columns={"user": "nope", "item": "mid", "rating": "score"})
    assert f"{path}:1:" in message and "'nope'" in message


def test_string_ids_remapped_and_maps_round_trip(tmp_path):
    path = write(
        tmp_path / "r.csv",
        "user,item,rating\nzoe,m10,4\nadam,m2,3\nzoe,m2,5\nbob,m1,2\n",
    )
    dataset = load_dataset(path)
    data = dataset.interactions
    assert (dataset.n_users, dataset.n_items) == (3, 3)
    assert data.users.dtype == np.int32 and data.users.max() == 2 and data.items.max() == 2
    # raw -> index -> raw gives back the file's columns, row for row.
    assert dataset.user_ids.to_raw(data.users).tolist() == ["zoe", "adam", "zoe", "bob"]
    assert dataset.item_ids.to_raw(data.items).tolist() == ["m10", "m2", "m2", "m1"]
    index = dataset.item_ids.index_of(np.array(["m1", "m2", "m10", "m3", "m"]))
    assert dataset.item_ids.to_raw(index[:3]).tolist() == ["m1", "m2", "m10"]
    assert index[3:].tolist() == [-1, -1]


def test_id_map_round_trip_and_lookups():
    ids, codes = IdMap.encode(np.array([100, 5, 7, 5, 100]))
    assert ids.raw.tolist() == [5, 7, 100] and codes.tolist() == [2, 0, 1, 0, 2]
    assert ids.to_raw(codes).tolist() == [100, 5, 7, 5, 100]
    assert ids.index_of(np.array([7, 8, 100, 4])).tolist() == [1, -1, 2, -1]
    # Text lookups of integer ids: a non-numeric value is unknown without hiding the others.
    assert ids.index_of(np.array(["7", "x", "100"])).tolist() == [1, -1, 2]
    words, codes = IdMap.encode(np.array(["m1", "m2"]))
    assert words.index_of(np.array(["m10", "m2"])).tolist() == [-1, 1]  # 'm10' is not cut to 'm1'


def test_timestamps_optional(tmp_path):
    path = write(tmp_path / "r.csv", "user,item,rating\n1,10,4\n2,20,3\n")
    assert read_ratings(path).timestamps is None
    assert load_dataset(path).interactions.timestamps is None
    fractional = write(tmp_path / "f.csv", "user,item,rating,timestamp\n1,10,4,100.5\n2,20,3,200\n")
    assert read_ratings(fractional).timestamps.tolist() == [100, 200]


# --- bad input -------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nope.csv"
    assert str(path) in error_of(read_ratings, path)
    message = error_of(load_dataset, path)
    assert str(path) in message and "no such file" in message


@pytest.mark.parametrize("text", ["", "\n\n", "userId,movieId,rating,timestamp\n"])
def test_empty_and_header_only_files(tmp_path, text):
    path = write(tmp_path / "r.csv", text)
    message = error_of(read_ratings, path)
    assert message.startswith(str(path)) and "empty" in message


def test_wrong_delimiter(tmp_path):
    path = write(tmp_path / "r.csv", "userId;movieId;rating\n1;10;4\n")
    message = error_of(read_ratings, path, sep=",")
    assert f"{path}:1:" in message and "delimiter" in message
    spaces = write(tmp_path / "s.txt", "1 10 4\n2 20 3\n")
    message = error_of(read_ratings, spaces)
    assert f"{spaces}:1:" in message and "delimiter" in message


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("userId,movieId,rating\n1,10,4\n2,20\n3,30,5\n", 3, "2 field(s), expected 3"),
        ("1\t10\t4\t100\n2\t20\t3\t200\t9\n", 2, "5 field(s), expected 4"),
        ("userId,movieId,rating,timestamp\n1,10,4,100\n2,20,3\n", 3, "3 field(s)"),
        ("userId,movieId,rating\n1,10,4\n1,11,5\n2,20,abc\n", 4, "'abc' is not a number"),
        ("userId,movieId,rating,timestamp\n1,10,4,100\n2,20,3,soon\n", 3, "timestamp 'soon'"),
        ("userId,movieId,rating\n1,10,4\n2,20,NaN\n", 3, "rating"),
        ("userId,movieId,rating\n1,10,4\n\n\n2,20,NaN\n", 5, "missing rating"),
        ("userId,movieId,rating\n1,10,4\n  \n2,20,3\n", 3, "1 field(s), expected 3"),
        ("userId,movieId,rating\n1,10,4\n2,20,\n", 3, "missing rating"),
        ("userId,movieId,rating\n1,10,4\n2,20,inf\n", 3, "rating is inf"),
        ("userId,movieId,rating\n1,10,4\n2,,3\n", 3, "missing item"),
        ("userId,movieId,rating\n1,10,4\n1.5,20,3\n", 3, "user id 1.5"),
    ],
    ids=[
        "few-fields",
        "many-fields",
        "no-timestamp",
        "abc",
        "bad-timestamp",
        "nan",
        "nan-after-empty-lines",
        "spaces-line",
        "blank",
        "inf",
        "no-item",
        "fractional-id",
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, text, line, words):
    path = write(tmp_path / "r.csv", text)
    message = error_of(read_ratings, path)
    assert f"{path}:{line}:" in message and words in message


def test_out_of_range_rating_in_known_scale(tmp_path):
    folder = ml100k_folder(tmp_path / "ml", "1\t1\t5\t100\n1\t2\t3\t101\n2\t1\t6\t102\n")
    message = error_of(load_dataset, folder)
    assert f"{folder / 'u.data'}:3:" in message and "outside 1..5" in message
    path = write(tmp_path / "r.csv", "user,item,rating\n1,1,4\n\n1,2,0.5\n")
    message = error_of(load_dataset, path, options=ReadOptions(scale=RatingScale(1, 5)))
    assert f"{path}:4:" in message and "0.5" in message  # the empty line is counted
    assert len(load_dataset(path).interactions) == 2  # without a declared scale it is inferred


def test_item_not_listed_in_movies_file(tmp_path):
    folder = ml100k_folder(tmp_path / "ml", "1\t1\t5\t100\n1\t2\t3\t101\n2\t4\t4\t102\n")
    message = error_of(load_dataset, folder)
    assert f"{folder / 'u.data'}:3:" in message and "item 4 is not listed" in message
    ml100k_folder(folder, "1\t1\t5\t100\n1\t2\t3\t101\n2\t3\t4\t102\n")
    assert load_dataset(folder).layout == "ml-100k"


def test_planted_unlisted_item_in_shared_latest_small():
    folder = shared_data("ml-latest-small")
    message = error_of(load_dataset, folder)
    assert f"{folder / 'ratings.csv'}:100838:" in message and "item 999999" in message


def test_bundled_latest_small_loads():
    dataset = load_dataset("ml-latest-small")
    assert len(dataset.interactions) == 100_836 and dataset.n_users == 610
    assert dataset.scale == RatingScale(0.5, 5.0, 0.5)


def test_latin1_text(tmp_path):
    path = write(tmp_path / "r.csv", "user,item,rating\nana,Amelie,4\nJosé,Amélie,5\n".encode("latin-1"))
    message = error_of(read_ratings, path)
    assert f"{path}:3:" in message and "--encoding latin-1" in message
    raw = read_ratings(path, encoding="latin-1")
    assert raw.users.tolist() == ["ana", "José"] and raw.items.tolist() == ["Amelie", "Amélie"]
    dataset = load_dataset(path, options=ReadOptions(encoding="latin-1"))
    index = dataset.user_ids.index_of(np.array(["José"]))
    assert dataset.user_ids.to_raw(index).tolist() == ["José"]


def test_duplicates_keep_latest_by_timestamp(tmp_path, caplog):
    path = write(
        tmp_path / "r.csv",
        "user,item,rating,timestamp\n1,1,4,100\n1,1,2,50\n1,2,3,10\n2,1,5,10\n1,2,1,10\n1,1,3,70\n",
    )
    with caplog.at_level(logging.WARNING, logger="deepmovie"):
        dataset = load_dataset(path)
    data = dataset.interactions
    got = {
        (int(dataset.user_ids.raw[u]), int(dataset.item_ids.raw[i])): (float(r), int(t))
        for u, i, r, t in zip(data.users, data.items, data.ratings, data.timestamps, strict=True)
    }
    # (1, 1): the latest (t=100) wins though it comes first; (1, 2): a tie, so the last row wins.
    assert got == {(1, 1): (4.0, 100), (1, 2): (1.0, 10), (2, 1): (5.0, 10)}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "3 duplicate" in warnings[0] and "latest" in warnings[0]


def test_duplicates_keep_last_row_without_timestamps(tmp_path, caplog):
    path = write(tmp_path / "r.csv", "user,item,rating\n1,1,4\n2,1,5\n1,1,2\n1,2,3\n")
    with caplog.at_level(logging.WARNING, logger="deepmovie"):
        dataset = load_dataset(path)
    data = dataset.interactions
    assert len(data) == 3
    row = int(np.flatnonzero((data.users == 0) & (data.items == 0))[0])
    assert data.ratings[row] == 2.0
    assert any("1 duplicate" in r.getMessage() and "last" in r.getMessage() for r in caplog.records)


def test_chunked_parse_equals_one_piece(tmp_path, monkeypatch):
    """Big files are parsed in chunks; small chunks here must give what one piece gives."""
    path = write_ratings(tmp_path / "r.csv", n_users=30, n_items=40, density=0.5)
    whole = read_ratings(path)
    monkeypatch.setattr(readers, "CHUNK", 200)
    chunked = read_ratings(path)
    for name in ("users", "items", "ratings", "timestamps"):
        np.testing.assert_array_equal(getattr(chunked, name), getattr(whole, name))
    # A text id after the first chunk makes the column text, as in a file read in one piece.
    mixed = write(tmp_path / "m.csv", path.read_text() + "bob,3,4,99999\n")
    raw = read_ratings(mixed)
    assert (
        raw.users[-1] == "bob"
        and raw.users[0] == str(whole.users[0])
        and len(raw.users) == len(whole.users) + 1
    )
    bad = write(tmp_path / "b.csv", path.read_text() + "7,3,x,99999\n")
    n_lines = len(bad.read_text().splitlines())
    assert f"{bad}:{n_lines}: rating 'x'" in error_of(read_ratings, bad)
