"""Raw ids are kept exactly, never through float: 2**53 and 2**53 + 1 stay two users, int64's ends
round-trip from file to run to answer, and an integer past int64 is refused naming the file and line."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

import deepmovie
from deepmovie.data import readers
from deepmovie.data.dataset import Dataset
from deepmovie.data.interactions import IdMap
from deepmovie.errors import DeepMovieError
from deepmovie.recommender import UnknownIdError
from deepmovie.recommender.recommender import _lookup
from deepmovie.serving.api import create_app

# Past 2**53 a float64 cannot tell neighbours apart; int64's ends are the last ids that fit.
EDGES = [2**53, 2**53 + 1, 2**63 - 1, -(2**63), 5]
PAST_INT64 = [2**63, 2**64, -(2**63) - 1]
ITEMS = EDGES[:4]


def rows() -> list[tuple[int, int, int, int]]:
    """(user, item, rating, timestamp): every edge user rates every edge item, each pair its own
    rating, so a merged or rounded id shows in what a user is said to have rated; each user's latest
    rating is of another item."""
    return [
        (user, item, 1 + (u + i) % 5, 100 + (i - u) % len(ITEMS))
        for u, user in enumerate(EDGES)
        for i, item in enumerate(ITEMS)
    ]


def write_layout(folder: Path, layout: str, rows: list[tuple[object, ...]]) -> Path:
    """``rows`` in one of the layouts a ratings file can have; the path to load."""
    folder.mkdir(parents=True, exist_ok=True)
    if layout == "csv":
        lines = ["userId,movieId,rating,timestamp", *(",".join(map(str, r)) for r in rows)]
        (folder / "ratings.csv").write_text("\n".join(lines) + "\n")
        return folder / "ratings.csv"
    if layout == "parquet":
        columns = list(zip(*rows, strict=True))
        names = ["userId", "movieId", "rating", "timestamp"]
        pq.write_table(pa.table(dict(zip(names, map(list, columns), strict=True))), folder / "r.parquet")
        return folder / "r.parquet"
    name, sep = {"ml-100k": ("u.data", "\t"), "ml-1m": ("ratings.dat", "::")}[layout]
    (folder / name).write_text("".join(sep.join(map(str, r)) + "\n" for r in rows))
    return folder  # a MovieLens folder: the layout is told by the file's name


def load_quietly(path: Path) -> Dataset:
    """Load with every warning an error: a cast that wraps or rounds warns before it goes wrong."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return Dataset.from_path(path)


def raw_rows(dataset: Dataset) -> list[tuple[object, object]]:
    data = dataset.interactions
    return list(
        zip(
            dataset.user_ids.to_raw(data.users).tolist(),
            dataset.item_ids.to_raw(data.items).tolist(),
            strict=True,
        )
    )


@pytest.mark.parametrize("layout", ["csv", "ml-100k", "ml-1m", "parquet"])
def test_int64_edge_ids_are_read_exactly_in_every_layout(tmp_path, layout):
    dataset = load_quietly(write_layout(tmp_path / layout, layout, rows()))
    assert dataset.user_ids.raw.dtype == dataset.item_ids.raw.dtype == np.int64
    assert (dataset.n_users, dataset.n_items) == (len(EDGES), len(ITEMS))
    assert sorted(raw_rows(dataset)) == sorted((u, i) for u, i, _, _ in rows())


@pytest.mark.parametrize("layout", ["csv", "ml-100k", "ml-1m"])
@pytest.mark.parametrize("value", PAST_INT64)
@pytest.mark.parametrize("role", ["user", "item"])
def test_an_integer_past_int64_is_refused_naming_file_line_and_field(tmp_path, layout, value, role):
    bad = (value, 1, 4, 100) if role == "user" else (1, value, 4, 100)
    path = write_layout(tmp_path / layout, layout, [(1, 1, 3, 99), (2**53 + 1, 2, 5, 98), bad])
    ratings = path if path.is_file() else next(p for p in path.iterdir())
    line = 4 if layout == "csv" else 3
    with pytest.raises(DeepMovieError) as error:
        load_quietly(path)
    assert str(error.value).startswith(f"{ratings}:{line}: {role} id {value} does not fit int64")


def test_ids_written_as_decimals_are_parsed_from_their_text(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating\n9007199254740993.0,+7,4\n9007199254740992,-9223372036854775808.00,3\n")
    assert raw_rows(load_quietly(path)) == [(2**53 + 1, 7), (2**53, -(2**63))]
    path.write_text("user,item,rating\n9007199254740993,1,4\n1.5,2,3\n")
    with pytest.raises(DeepMovieError, match=rf"^{path}:3: user id 1.5 is not written as a whole number"):
        load_quietly(path)


def test_a_column_with_text_keeps_every_id_as_written(tmp_path, monkeypatch):
    """One non-numeric id makes the column text, as in any file: ids past int64, neighbours past 2**53
    and '05' beside '5' all stay apart, also when the big-file reader's chunks see different types."""
    users = ["5", "9007199254740992", "9007199254740993", "9223372036854775808", "18446744073709551616"]
    users += ["05", "tt0111161"]
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating\n" + "".join(f"{u},{i},3\n" for i, u in enumerate(users)))
    whole = load_quietly(path)
    assert whole.user_ids.raw.dtype.kind == "U" and whole.n_users == len(users)
    assert [u for u, _ in raw_rows(whole)] == users
    monkeypatch.setattr(readers, "CHUNK", 16)  # about a line a chunk: int64, float64 and text chunks
    chunked = load_quietly(path)
    assert raw_rows(chunked) == raw_rows(whole)


def test_chunks_of_int64_and_float64_ids_are_joined_exactly(tmp_path, monkeypatch):
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating\n5,1,3\n9007199254740993,1,3\n9007199254740992.0,1,3\n")
    monkeypatch.setattr(readers, "CHUNK", 16)
    assert [u for u, _ in raw_rows(load_quietly(path))] == [5, 2**53 + 1, 2**53]


def test_id_map_lookups_are_exact():
    ids, _ = IdMap.encode(np.array(EDGES))
    index = {raw: i for i, raw in enumerate(ids.raw.tolist())}
    as_text = np.array([str(v) for v in EDGES])
    assert ids.index_of(as_text).tolist() == [index[v] for v in EDGES]
    assert ids.index_of(np.array([2**53 + 1, 2**64 - 1], dtype=np.uint64)).tolist() == [index[2**53 + 1], -1]
    # Not int64 integers: unknown, never wrapped, truncated or an OverflowError.
    assert ids.index_of(np.array(["9223372036854775808", "5.5", "x"])).tolist() == [-1, -1, -1]
    assert ids.index_of(np.array([5.5, 5.0])).tolist() == [-1, -1]
    assert ids.index_of(np.array([2**64, 5], dtype=object)).tolist() == [-1, index[5]]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A rating model trained on the edge ids and saved: each user's latest rating is held out."""
    folder = tmp_path_factory.mktemp("edges")
    path = write_layout(folder, "csv", rows())
    deepmovie.fit("bias", path, split="last:1", out=folder / "run")
    return folder / "run"


def seen(user: int) -> dict[int, float]:
    """The items ``user`` rated in training (all but the latest) and their ratings."""
    return {i: float(r) for u, i, r, t in rows() if u == user and t < 100 + len(ITEMS) - 1}


def test_a_saved_run_answers_for_every_edge_id(run_dir):
    model = deepmovie.load(run_dir)
    for user in EDGES:
        for given in (user, str(user), f" {user} "):
            history = model.history(given)
            assert history.user == user
            assert {r.item: r.rating for r in history.ratings} == seen(user)
        listed = model.recommend(str(user), exclude_seen=False, k=len(ITEMS))
        assert listed.user == user and sorted(m.item for m in listed.items) == sorted(ITEMS)
        for item in ITEMS:
            prediction = model.predict(str(user), str(item))
            assert (prediction.user, prediction.item.item) == (user, item)
    pairs = [(u, i) for u in EDGES for i in ITEMS]
    by_pair = model.predict_many(np.array([str(u) for u, _ in pairs]), np.array([str(i) for _, i in pairs]))
    assert by_pair.tolist() == pytest.approx([model.predict(u, i).rating for u, i in pairs], abs=1e-4)
    for missing in (2**63, str(2**64), "9007199254740994"):
        with pytest.raises(UnknownIdError, match="not an id of this model"):
            model.history(missing)


def test_the_cli_and_the_http_api_look_up_ids_exactly(run_dir):
    from typer.testing import CliRunner

    from deepmovie.cli.app import app

    cli = CliRunner()
    result = cli.invoke(
        app, ["predict", str(run_dir), "--user", str(2**53 + 1), "--item", str(-(2**63)), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert '"user": 9007199254740993' in result.output and '"item": -9223372036854775808' in result.output
    result = cli.invoke(
        app, ["recommend", str(run_dir), "--user", str(2**63 - 1), "--json", "--include-seen"]
    )
    assert result.exit_code == 0, result.output
    assert '"user": 9223372036854775807' in result.output

    http = TestClient(create_app(deepmovie.load(run_dir)))
    for user in EDGES:
        answer = http.get(f"/users/{user}/ratings").json()
        assert answer["user"] == user and {r["item"]: r["rating"] for r in answer["ratings"]} == seen(user)
        answer = http.get("/predict", params={"user": str(user), "item": str(2**53 + 1)}).json()
        assert (answer["user"], answer["item"]["item"]) == (user, 2**53 + 1)
    assert http.get("/predict", params={"user": str(2**63), "item": str(2**53)}).status_code == 404


@pytest.mark.slow  # a real subprocess, importing PyTorch
def test_the_cli_refuses_an_id_past_int64_in_one_line(tmp_path):
    path = write_layout(tmp_path, "csv", [(2**63, 1, 4, 1), (2**53, 1, 3, 2), (2**53 + 1, 2, 5, 3)])
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "deepmovie",
            "train",
            "popularity",
            "--data",
            str(path),
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"error: {path}:2: user id {2**63} does not fit int64; ids are 64-bit integers or text"
    ]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("written", ["1_2", "١٢", "12.0", "0x0c", "1e1", True])
def test_an_integer_id_is_looked_up_only_as_ascii_digits(written):
    """``int()`` reads '1_2' and Arabic-Indic digits as 12: the look-up must not answer for user 12."""
    ids = IdMap(np.array([1, 12], dtype=np.int64))
    with pytest.raises(UnknownIdError):
        _lookup(ids, written, "user")
    assert _lookup(ids, " 12 ", "user") == 1 and _lookup(ids, "+12", "user") == 1
