"""Two CPU ranks (gloo on 127.0.0.1) train what one process trains, and only rank 0 writes.

Every launch is ``python -m torch.distributed.run --nproc-per-node 2`` in a subprocess with a timeout,
so a hung collective fails the test instead of hanging CI. One launch runs ``deepmovie train`` (the
CLI path); another runs this file as the worker (``__main__`` below), which trains a dense model, PMF
and DLRM with sharded tables with per-rank run directories (rank 1's must never appear) and checks a
row-sharded embedding's forward and backward against a plain table.

Tolerances: the ranks sum the same float32 terms in another order, so results agree to about 1e-6;
plain SGD is used where an adaptive optimizer (Adam, Adagrad) would amplify that rounding.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import write_ratings
from deepmovie.config import build_config
from deepmovie.experiment import run
from deepmovie.rundir import SUMMARY, WEIGHTS
from deepmovie.training.checkpoint import load_weights

LAUNCH_TIMEOUT = 150  # seconds for one 2-rank launch (start-up included)
pytestmark = [pytest.mark.timeout(2 * LAUNCH_TIMEOUT + 60), pytest.mark.slow]

# The worker's runs: (name, model, params); the same configs are run in one process for reference.
WORKER_RUNS = [
    ("autorec", "autorec", {"hidden": 16, "epochs": 3, "batch_size": 32, "optimizer": "sgd", "lr": 1e-3}),
    ("pmf", "pmf", {"epochs": 3, "factors": 8}),
    (
        "dlrm-sharded",
        "dlrm",
        {"shard_tables": True, "epochs": 2, "batch_size": 128, "optimizer": "sgd", "lr": 1e-3, "dropout": 0},
    ),
]
# Rows of the sharded-embedding check: a table cut in two uneven ranges, ids drawn per rank.
TABLE_ROWS, TABLE_DIM, RANGES = 23, 4, [(0, 12), (12, 23)]


def _config(model: str, data: Path, params: dict) -> dict:
    return {"model": model, "data": str(data), "split": "random:0.2", "seed": 5, "params": params}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    command += ["--master-addr", "127.0.0.1", "--master-port", str(_free_port()), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _assert_same_run(got: Path, expected: Path, atol: float) -> None:
    a, b = json.loads((got / SUMMARY).read_text()), json.loads((expected / SUMMARY).read_text())
    assert a["world_size"] == 2 and b["world_size"] == 1
    assert a["test_rmse"] == pytest.approx(b["test_rmse"], abs=atol)
    assert a["best_epoch"] == b["best_epoch"]
    weights, reference = load_weights(got / WEIGHTS)["state"], load_weights(expected / WEIGHTS)["state"]
    assert weights.keys() == reference.keys()
    for key, value in reference.items():
        torch.testing.assert_close(weights[key], value, atol=atol, rtol=0, msg=key)


@pytest.fixture(scope="module")
def ratings(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("distributed-data")
    return write_ratings(folder / "ratings.csv", n_users=120, n_items=80, density=0.3, seed=3)


@pytest.fixture(scope="module")
def worker(ratings, tmp_path_factory) -> Path:
    """One 2-rank launch of this file's worker; its outputs, per run and rank, under the folder."""
    folder = tmp_path_factory.mktemp("distributed-worker")
    _torchrun(str(Path(__file__).resolve()), str(ratings), str(folder), cwd=folder)
    return folder


def test_biased_mf_cli_two_ranks_match_one(ratings, tmp_path):
    """Sparse embedding gradients (all-gathered) under ``torchrun -m deepmovie train``; the one-process
    reference takes the fused SGD path, the ranks autograd: the same arithmetic."""
    params = {"epochs": 3, "factors": 8}
    run(build_config(_config("biased-mf", ratings, params)), tmp_path / "one", quiet=True)
    done = _torchrun(
        "-m", "deepmovie", "train", "biased-mf", "--data", str(ratings), "--split", "random:0.2",
        "--seed", "5", "--set", "epochs=3", "--set", "factors=8", "--out", str(tmp_path / "two"), "-q",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.stdout.count("test RMSE") == 1  # rank 0 alone prints the summary
    _assert_same_run(tmp_path / "two", tmp_path / "one", atol=1e-5)


@pytest.mark.parametrize("name", [name for name, _, _ in WORKER_RUNS])
def test_worker_runs_match_one_process_and_only_rank_0_writes(worker, ratings, tmp_path, name):
    model, params = next((m, p) for n, m, p in WORKER_RUNS if n == name)
    run(build_config(_config(model, ratings, params)), tmp_path / "one", quiet=True)
    assert not (worker / f"{name}-rank1").exists()
    assert (worker / f"{name}-rank0" / "checkpoint.pt").is_file()
    _assert_same_run(worker / f"{name}-rank0", tmp_path / "one", atol=1e-5)


def test_row_sharded_embedding_matches_a_plain_table(worker):
    full = torch.randn(TABLE_ROWS, TABLE_DIM, generator=torch.Generator().manual_seed(0))
    table = full.clone().requires_grad_()
    results = [torch.load(worker / f"embedding-rank{rank}.pt") for rank in range(len(RANGES))]
    for rank, got in enumerate(results):
        ids, upstream = _lookups(rank)
        (table[ids] * upstream).sum().backward()  # gradients of both ranks' lookups add up
        torch.testing.assert_close(got["out"], full[ids])
    for got, (start, stop) in zip(results, RANGES, strict=True):
        torch.testing.assert_close(got["grad"], table.grad[start:stop])


def _lookups(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ids rank ``rank`` looks up and the upstream gradient it sends back (seeded by rank)."""
    generator = torch.Generator().manual_seed(10 + rank)
    ids = torch.randint(0, TABLE_ROWS, (7, 3), generator=generator)
    return ids, torch.randn(7, 3, TABLE_DIM, generator=generator)


def _worker(data: Path, folder: Path) -> None:
    """Runs on each rank under torchrun: the embedding check, then every run of ``WORKER_RUNS``."""
    from deepmovie.engine import distributed
    from deepmovie.models.features.sharded import RowShardedEmbedding

    distributed.start("cpu")
    rank = distributed.rank()
    full = torch.randn(TABLE_ROWS, TABLE_DIM, generator=torch.Generator().manual_seed(0))
    table = RowShardedEmbedding(full, RANGES)
    ids, upstream = _lookups(rank)
    out = table(ids)
    (out * upstream).sum().backward()
    torch.save(
        {"out": out.detach(), "grad": table.weight.grad.to_dense()}, folder / f"embedding-rank{rank}.pt"
    )
    for name, model, params in WORKER_RUNS:
        run(build_config(_config(model, data, params)), folder / f"{name}-rank{rank}", quiet=True)


if __name__ == "__main__":
    _worker(Path(sys.argv[1]), Path(sys.argv[2]))
