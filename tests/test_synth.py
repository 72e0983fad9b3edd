"""Synthetic MovieLens-shaped data: exact shape, MovieLens marginals, a known floor, and the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pytest

from deepmovie.data import synth
from deepmovie.data.dataset import load_dataset
from deepmovie.data.synth import SHAPES, synthesize
from deepmovie.errors import DeepMovieError

TINY = (60, 150, 4_000)  # users, items, ratings: a second to generate


def read(folder: Path) -> dict[str, np.ndarray]:
    table = pacsv.read_csv(folder / "ratings.csv")
    return {name: table.column(name).to_numpy() for name in table.column_names}


@pytest.fixture(scope="module")
def ml100k(tmp_path_factory) -> Path:
    """The full ML-100K shape: big enough for the marginals, fast enough for every test run."""
    out = tmp_path_factory.mktemp("synth") / "ml-100k"
    synthesize("ml-100k", out, seed=3, quiet=True)
    return out


def test_exact_shape_and_csv_layout(tmp_path):
    synthesize("ml-100k", tmp_path, sizes=TINY, quiet=True)
    assert (tmp_path / "ratings.csv").read_text().splitlines()[0] == "userId,movieId,rating,timestamp"
    assert (tmp_path / "movies.csv").read_text().splitlines()[0] == "movieId,title,genres"
    columns = read(tmp_path)
    users, items = columns["userId"], columns["movieId"]
    assert len(users) == TINY[2]
    assert len(np.unique(users)) == TINY[0] and len(np.unique(items)) == TINY[1]
    assert np.bincount(users)[1:].min() >= 20  # MovieLens keeps users with 20 ratings or more
    keys = users.astype(np.int64) * (items.max() + 1) + items
    assert np.all(np.diff(keys) > 0)  # sorted by user then item, hence no duplicate pair
    movies = pacsv.read_csv(tmp_path / "movies.csv").column("movieId").to_numpy()
    assert set(items) == set(movies)


@pytest.mark.parametrize(
    ("scale", "grid"), [("whole", np.arange(1.0, 5.5)), ("half", np.arange(0.5, 5.25, 0.5))]
)
def test_ratings_on_the_grid(tmp_path, scale, grid):
    synthesize("ml-100k", tmp_path, sizes=TINY, scale=scale, noise=1.5, quiet=True)
    ratings = read(tmp_path)["rating"]
    assert set(np.unique(ratings)) == set(grid)  # in range, on the grid, and every level used


def test_timestamps_inside_the_release_span(ml100k):
    columns = read(ml100k)
    shape = SHAPES["ml-100k"]
    assert columns["timestamp"].min() >= shape.start and columns["timestamp"].max() <= shape.end
    by_user = np.split(columns["timestamp"], np.flatnonzero(np.diff(columns["userId"])) + 1)
    spans = np.array([s.max() - s.min() for s in by_user])
    assert 0.3 < np.mean(spans < 86_400) < 0.95  # most users rate in one sitting, some come back


def test_deterministic_under_seed(tmp_path):
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        synthesize("ml-100k", tmp_path / name, sizes=TINY, seed=seed, quiet=True)
    same = (tmp_path / "a" / "ratings.csv").read_bytes() == (tmp_path / "b" / "ratings.csv").read_bytes()
    assert same
    assert (tmp_path / "a" / "ratings.csv").read_bytes() != (tmp_path / "c" / "ratings.csv").read_bytes()
    assert (tmp_path / "a" / "movies.csv").read_bytes() == (tmp_path / "b" / "movies.csv").read_bytes()


def test_chunking_and_exact_sampler_keep_the_invariants(tmp_path, monkeypatch):
    """Many chunks, and users who rate most of a small catalogue (the Gumbel top-k path)."""
    monkeypatch.setattr(synth, "CHUNK_ROWS", 300)
    synthesize("ml-1m", tmp_path, sizes=(40, 50, 40 * 28), quiet=True)
    columns = read(tmp_path)
    keys = columns["userId"].astype(np.int64) * 10**6 + columns["movieId"]
    assert len(keys) == 40 * 28 and len(np.unique(keys)) == len(keys)
    assert len(np.unique(columns["movieId"])) == 50
    assert np.bincount(columns["userId"])[1:].max() <= 30  # at most 60% of the items


def test_long_tailed_popularity_and_heavy_users(ml100k):
    columns = read(ml100k)
    counts = np.sort(np.bincount(columns["movieId"]))[::-1]
    counts = counts[counts > 0]
    assert counts[: len(counts) // 10].sum() > 0.3 * counts.sum()
    per_user = np.bincount(columns["userId"])[1:]
    assert per_user.min() >= 20 and per_user.max() > 5 * np.median(per_user)


def test_loads_as_a_movielens_folder(ml100k):
    truth = json.loads((ml100k / "truth.json").read_text())
    data = load_dataset(ml100k)
    assert (len(data.interactions), data.n_users, data.n_items) == (100_000, 943, 1_682)
    assert (truth["ratings"], truth["users"], truth["items"]) == (100_000, 943, 1_682)
    assert data.items is not None
    assert abs(float(np.mean(data.interactions.ratings)) - truth["rating_mean"]) < 1e-6


def test_noise_floor_is_recorded_and_beats_a_baseline(ml100k):
    truth = json.loads((ml100k / "truth.json").read_text())
    assert truth["seed"] == 3 and truth["shape"] == "ml-100k" and truth["rank"] == synth.RANK
    assert truth["noise"] == 0.8
    assert abs(truth["noise_floor"] - 0.8) < 0.1  # rounding adds variance, clipping removes some
    assert truth["bayes_floor"] <= truth["noise_floor"]
    assert 3.3 < truth["rating_mean"] < 3.7

    data = load_dataset(ml100k).interactions
    rng = np.random.default_rng(0)
    test = rng.random(len(data)) < 0.1
    users, items, ratings = data.users, data.items, data.ratings.astype(np.float64)
    mean = ratings[~test].mean()
    user_bias = item_bias = 0.0
    for _ in range(10):  # user + item biases by alternating regularized means
        residual = ratings[~test] - mean - _at(item_bias, items[~test])
        user_bias = _shrunk_mean(users[~test], residual, data.n_users)
        residual = ratings[~test] - mean - user_bias[users[~test]]
        item_bias = _shrunk_mean(items[~test], residual, data.n_items)
    predicted = np.clip(mean + user_bias[users[test]] + item_bias[items[test]], 1, 5)
    rmse = math.sqrt(np.mean((predicted - ratings[test]) ** 2))
    assert truth["noise_floor"] < rmse < 1.2  # the u.v interaction is left on the table


def _at(bias, index):
    return bias[index] if isinstance(bias, np.ndarray) else 0.0


def _shrunk_mean(index: np.ndarray, values: np.ndarray, n: int, shrink: float = 5.0) -> np.ndarray:
    return np.bincount(index, weights=values, minlength=n) / (np.bincount(index, minlength=n) + shrink)


def test_without_noise_the_best_predictor_is_exact(tmp_path):
    synthesize("ml-100k", tmp_path, sizes=TINY, noise=0.0, quiet=True)
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["bayes_floor"] == 0.0
    assert 0.2 < truth["noise_floor"] < 0.35  # what is left is rounding to whole stars (1/sqrt(12))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shape": "ml-5m"}, "ml-100k, ml-1m, ml-10m, ml-20m"),
        ({"noise": -0.1}, "--noise"),
        ({"noise": float("nan")}, "--noise"),
        ({"scale": "quarter"}, "--scale"),
        ({"seed": -1}, "--seed"),
        ({"sizes": (10, 30, 500)}, "items"),
        ({"sizes": (10, 100, 150)}, "ratings must be between"),
    ],
)
def test_bad_options_are_user_errors(tmp_path, kwargs, message):
    arguments = {"shape": "ml-100k", "out": tmp_path, "quiet": True, **kwargs}
    with pytest.raises(DeepMovieError, match=message.replace("-", r"\-")):
        synthesize(**arguments)


def test_cli(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "deepmovie", "synth", "ml-100k", "--out", str(tmp_path), "--seed", "1", "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "100,000 ratings" in done.stdout and "noise floor" in done.stdout
    assert json.loads((tmp_path / "truth.json").read_text())["seed"] == 1

    bad = subprocess.run(
        [sys.executable, "-m", "deepmovie", "synth", "ml-5m", "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: ") and len(bad.stderr.strip().splitlines()) == 1
    assert "Traceback" not in bad.stderr and "ml-20m" in bad.stderr
