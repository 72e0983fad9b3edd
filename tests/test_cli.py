"""The ``deepmovie`` command as users run it: one-line errors with exit code 2, and a complete run dir.

Every command is a real subprocess. They start together in a module fixture (each spends its first
seconds importing PyTorch), and each test then checks its own result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import SHARED, shared_data, write_ratings
from deepmovie.config import build_config, load_config_file

pytestmark = pytest.mark.slow  # real subprocesses, each importing PyTorch

SUMMARY_KEYS = {
    "model",
    "data",
    "split",
    "seed",
    "split_hash",
    "n_train",
    "n_valid",
    "n_test",
    "cold_test_rows",
    "test_rmse",
    "test_mae",
    "valid_rmse",
    "best_epoch",
    "epochs",
    "fit_seconds",
    "epoch_seconds",
    "train_samples_per_second",
    "device",
    "config",
    "version",
}


def deepmovie(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEEPMOVIE_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "deepmovie", *args], capture_output=True, text=True, env=env, timeout=240
    )


def bad_inputs(folder: Path) -> dict[str, tuple[list[str], str]]:
    """Case -> (``train`` arguments, text its one error line must hold: the file:line or the field)."""
    good = write_ratings(folder / "good.csv")
    semi = folder / "semi.csv"
    semi.write_text("userId;movieId;rating\n1;10;4\n2;20;3\n")
    nan = folder / "nan.csv"
    nan.write_text("userId,movieId,rating\n1,10,4\n2,20,NaN\n3,30,5\n")
    ml = folder / "ml"
    ml.mkdir()
    (ml / "u.data").write_text("1\t1\t5\t100\n1\t2\t6\t101\n")
    empty = folder / "empty.csv"
    empty.write_text("")
    config = folder / "broken.yaml"
    config.write_text("model: bias\nparams: {epochs: 3\nseed: 1\n")
    return {
        "missing-file": (
            ["bias", "--data", str(folder / "missing.csv")],
            f"{folder / 'missing.csv'}: no such file",
        ),
        "wrong-delimiter": (["bias", "--data", str(semi), "--sep", ","], f"{semi}:1: 1 field(s)"),
        "nan-rating": (["bias", "--data", str(nan)], f"{nan}:3:"),
        "out-of-range": (["bias", "--data", str(ml)], f"{ml / 'u.data'}:2: rating 6 is outside 1..5"),
        "empty-file": (["bias", "--data", str(empty)], f"{empty}: the file is empty"),
        "unknown-model": (["nope", "--data", str(good)], "unknown model 'nope'"),
        "unknown-split": (["bias", "--data", str(good), "--split", "bogus"], "unknown split 'bogus'"),
        "unknown-set-key": (
            ["bias", "--data", str(good), "--set", "lr=0.1"],
            "parameter 'lr' (known: epochs",
        ),
        "bad-set-value": (["bias", "--data", str(good), "--set", "epochs=abc"], "parameter 'epochs'"),
        "malformed-yaml": (
            ["bias", "--data", str(good), "--config", str(config)],
            f"{config}:3: not valid YAML",
        ),
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    home = folder / "home"
    cases = bad_inputs(folder)
    good = folder / "good.csv"
    jobs = {}
    for name, (args, _) in cases.items():
        jobs[name] = ["train", *args, "--out", str(folder / f"run-{name}"), "-q"]
    for command in ("models", "datasets", "splits"):
        jobs[command] = [command]
    if (SHARED / "ml-100k").exists():
        real = ["--data", str(SHARED / "ml-100k"), "--split", "fold:u1", "--valid-fraction", "0"]
        jobs["ml-100k"] = ["train", "bias", *real, "--out", str(folder / "run-ml-100k"), "-q"]
    good_run = ["train", "bias", "--data", str(good), "--set", "epochs=3", "--seed", "1"]
    good_run += ["--out", str(folder / "run-good"), "-q"]

    def twice() -> tuple:
        first = deepmovie(home, *good_run)
        summary = (folder / "run-good" / "summary.json").read_bytes() if first.returncode == 0 else None
        return first, summary, deepmovie(home, *good_run)

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        chained = pool.submit(twice)
        futures = {name: pool.submit(deepmovie, home, *args) for name, args in jobs.items()}
        results = {name: future.result() for name, future in futures.items()}
        results["good"], results["summary-before"], results["again"] = chained.result()
    return {"folder": folder, "cases": cases, "results": results}


def assert_one_error_line(result: subprocess.CompletedProcess, expected: str) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0], lines[0]


@pytest.mark.parametrize(
    "case",
    [
        "missing-file",
        "wrong-delimiter",
        "nan-rating",
        "out-of-range",
        "empty-file",
        "unknown-model",
        "unknown-split",
        "unknown-set-key",
        "bad-set-value",
        "malformed-yaml",
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(runs, case):
    _, expected = runs["cases"][case]
    assert_one_error_line(runs["results"][case], expected)
    assert not (runs["folder"] / f"run-{case}").exists()


def test_good_run_writes_a_complete_run_directory(runs):
    result = runs["results"]["good"]
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "test RMSE" in result.stdout
    out = runs["folder"] / "run-good"
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "model.pt"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    assert summary.keys() >= SUMMARY_KEYS, SUMMARY_KEYS - summary.keys()
    good = runs["folder"] / "good.csv"
    rows = len(good.read_text().splitlines()) - 1
    assert summary["n_train"] + summary["n_valid"] + summary["n_test"] == rows
    assert summary["n_test"] == round(rows * 0.1) and summary["n_valid"] > 0
    assert (summary["model"], summary["data"], summary["split"], summary["seed"]) == (
        "bias",
        str(good),
        "random:0.1",
        1,
    )
    assert summary["epochs"] == 3 and len(summary["epoch_seconds"]) == 3
    assert 0 < summary["test_mae"] <= summary["test_rmse"] < 2
    assert summary["config"]["params"]["epochs"] == 3
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    config = build_config(load_config_file(out / "config.yaml"))
    assert config.resolved() == summary["config"]


def test_second_run_into_the_same_out_is_refused(runs):
    assert runs["results"]["good"].returncode == 0
    out = runs["folder"] / "run-good"
    assert_one_error_line(runs["results"]["again"], f"{out}: already holds a run")
    assert (out / "summary.json").read_bytes() == runs["results"]["summary-before"]


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("models", ["bias", "global-mean", "biased-mf", "epochs="]),
        ("datasets", ["ml-latest-small", "bundled", "ml-1m", "deepmovie fetch ml-1m"]),
        ("splits", ["random", "convmf", "fold", "kfold", "temporal", "user-holdout", "file"]),
    ],
)
def test_listing_commands(runs, command, words):
    result = runs["results"][command]
    assert result.returncode == 0, result.stderr
    for word in words:
        assert word in result.stdout


def test_bias_on_ml100k_u1_matches_surprise(runs):
    shared_data("ml-100k")
    result = runs["results"]["ml-100k"]
    assert result.returncode == 0, result.stderr
    summary = json.loads((runs["folder"] / "run-ml-100k" / "summary.json").read_text())
    assert (summary["n_train"], summary["n_valid"], summary["n_test"]) == (80_000, 0, 20_000)
    assert summary["test_rmse"] == pytest.approx(0.9600, abs=0.0005)
