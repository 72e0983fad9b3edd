"""Synthetic data: exact shapes, a valid MovieLens folder, long tails and a known noise floor."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow.csv as pacsv
import pytest

from deepmovie.data.dataset import load_dataset
from deepmovie.data.synth import synthesize
from deepmovie.errors import DeepMovieError

SIZES = (300, 400, 20_000)


def generate(folder, **options):
    synthesize("ml-100k", folder, quiet=True, sizes=SIZES, **options)
    return pacsv.read_csv(folder / "ratings.csv")


def test_exact_counts_grid_no_duplicates_and_loads_as_movielens(tmp_path):
    table = generate(tmp_path, scale="half")
    users, items = table["userId"].to_numpy(), table["movieId"].to_numpy()
    ratings = table["rating"].to_numpy()
    assert table.num_rows == SIZES[2]
    assert len(np.unique(users)) == SIZES[0]
    assert len(np.unique(users.astype(np.int64) * 10**7 + items)) == SIZES[2]
    assert ratings.min() >= 0.5 and ratings.max() <= 5 and np.all(ratings * 2 == np.round(ratings * 2))
    assert np.bincount(np.unique(users, return_inverse=True)[1]).min() >= 20  # as MovieLens
    data = load_dataset(tmp_path)
    assert len(data.interactions) == SIZES[2] and data.items is not None


def test_seeded(tmp_path):
    a = generate(tmp_path / "a", seed=1)
    b = generate(tmp_path / "b", seed=1)
    c = generate(tmp_path / "c", seed=2)
    assert a.equals(b) and not a.equals(c)


def test_popularity_is_long_tailed(tmp_path):
    items = generate(tmp_path)["movieId"].to_numpy()
    counts = np.sort(np.unique(items, return_counts=True)[1])[::-1]
    assert counts[: len(counts) // 10].sum() > 0.3 * counts.sum()


def test_noise_floor_is_recorded_and_baselines_stay_above_it(tmp_path):
    table = generate(tmp_path, noise=0.8)
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["noise_floor"] == pytest.approx(0.8, abs=0.1)
    ratings = table["rating"].to_numpy()
    assert np.sqrt(np.mean((ratings - ratings.mean()) ** 2)) > truth["noise_floor"]


@pytest.mark.parametrize(
    ("kwargs", "field"), [({"noise": -1.0}, "--noise"), ({"scale": "tenths"}, "--scale")]
)
def test_bad_options_name_the_option(tmp_path, kwargs, field):
    with pytest.raises(DeepMovieError, match=field):
        synthesize("ml-100k", tmp_path, quiet=True, sizes=SIZES, **kwargs)


def test_cli_exit_codes(tmp_path):
    good = subprocess.run(
        [sys.executable, "-m", "deepmovie", "synth", "ml-100k", "--out", str(tmp_path / "s"), "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert good.returncode == 0 and (tmp_path / "s" / "truth.json").is_file()
    bad = subprocess.run(
        [sys.executable, "-m", "deepmovie", "synth", "ml-7m", "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
