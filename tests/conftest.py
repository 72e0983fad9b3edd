"""Shared fixtures: a private DEEPMOVIE_HOME per test, the real data under ../shared/data, small
ratings files, and the ``deepmovie`` command run in this process."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

from deepmovie import cli
from deepmovie.config import build_config
from deepmovie.data.interactions import Interactions
from deepmovie.experiment import run

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_data(name: str) -> Path:
    """A folder of ../shared/data, or skip the test where this checkout has none beside it."""
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"{path} is absent (real MovieLens data lives beside the repo, not in it)")
    return path


@pytest.fixture(autouse=True)
def deepmovie_home(tmp_path_factory, monkeypatch) -> Path:
    home = tmp_path_factory.mktemp("deepmovie-home")
    monkeypatch.setenv("DEEPMOVIE_HOME", str(home))
    return home


class Result(NamedTuple):
    code: int
    out: str
    err: str


@pytest.fixture
def deepmovie(monkeypatch, capsys):
    """``deepmovie ARGS`` in this process: (exit code, stdout, stderr). ``deepmovie.cli.main`` with its
    hard exit turned into SystemExit gives the same single stderr line and exit code 2 as a subprocess,
    without importing PyTorch anew."""
    monkeypatch.setattr(cli, "_exit_now", sys.exit)

    def call(*args: object) -> Result:
        monkeypatch.setattr(sys, "argv", ["deepmovie", *map(str, args)])
        monkeypatch.setattr(logging.root, "handlers", [])  # main's handler then logs to this capture
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            cli.main()
        captured = capsys.readouterr()
        return Result(exited.value.code or 0, captured.out, captured.err)

    return call


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every entry under ``folder``, itself included: its mtime and, for a file, its bytes."""
    entries = [folder, *folder.rglob("*")]
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else b"")
        for p in entries
    }


def assert_one_error_line(result: Result, expected: str) -> None:
    """Exit code 2 and one stderr line that holds ``expected``; no traceback on either stream."""
    assert "Traceback" not in result.out + result.err, result.out + result.err
    assert result.code == 2, (result.code, result.err)
    lines = result.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    assert expected in lines[0], lines[0]


def write_ratings(
    path: Path,
    n_users: int = 30,
    n_items: int = 40,
    density: float = 0.3,
    seed: int = 0,
    header: str = "userId,movieId,rating,timestamp",
) -> Path:
    """A small ratings CSV with a learnable structure: biases plus a rank-3 interaction."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(n_users, 3))
    v = rng.normal(size=(n_items, 3))
    user_bias, item_bias = rng.normal(0, 0.6, n_users), rng.normal(0, 0.6, n_items)
    mask = rng.random((n_users, n_items)) < density
    users, items = np.nonzero(mask)
    signal = 3.2 + user_bias[users] + item_bias[items] + 0.7 * (u[users] * v[items]).sum(1)
    ratings = np.clip(np.round(signal), 1, 5)
    lines = [header] if header else []
    lines += [
        f"{a + 1},{b + 1},{r:g},{1000 + i}"
        for i, (a, b, r) in enumerate(zip(users, items, ratings, strict=True))
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_movies(
    path: Path, n_items: int, genres: list[str], title: Callable[[int], str] = "Movie {}".format
) -> Path:
    """A movies.csv for items 1..n_items: item k has the genres of k's set bits, a year 1980 + k."""
    rows = ["movieId,title,genres"]
    for item in range(1, n_items + 1):
        names = "|".join(g for k, g in enumerate(genres) if (item >> k) & 1) or "(no genres listed)"
        rows.append(f'{item},"{title(item)} ({1980 + item})",{names}')
    path.write_text("\n".join(rows) + "\n")
    return path


def random_ratings(n_users: int, n_items: int, density: float, seed: int = 0) -> Interactions:
    """Uniform 1..5 ratings in random cells: for a model's shapes and mechanics, nothing to learn."""
    rng = np.random.default_rng(seed)
    users, items = np.nonzero(rng.random((n_users, n_items)) < density)
    values = rng.integers(1, 6, len(users)).astype(np.float32)
    return Interactions(users.astype(np.int32), items.astype(np.int32), values, n_users, n_items)


def fit_test_rmse(data: Path, model: str, params: dict) -> float:
    """Train ``model`` on a ``random:0.2`` split of ``data``: its test RMSE, checked finite."""
    config = build_config({"model": model, "data": str(data), "split": "random:0.2", "params": params})
    summary = run(config, None, quiet=True)
    assert np.isfinite(summary["test_rmse"])
    return summary["test_rmse"]
