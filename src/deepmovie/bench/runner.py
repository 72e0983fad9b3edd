"""Run a bench: every entry for every seed into ``OUT/runs/<label>-seed<k>/``, peers beside them.

A run directory that already holds a ``summary.json`` of the same config is reused, not retrained, and
an interrupted one is resumed from its checkpoint: a bench killed half-way continues where it stopped.
A run of another config, or one with a damaged file, stops the bench with its name, unless
``overwrite`` says to train it again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepmovie.bench.entries import Entry, Setting
from deepmovie.bench.peers import Peer, run_peer
from deepmovie.config import RunConfig
from deepmovie.errors import DeepMovieError
from deepmovie.experiment import prepare, run
from deepmovie.files import write_text
from deepmovie.recommender.artifacts import read_config
from deepmovie.rundir import CONFIG, SUMMARY, check_files, differing, read_summary

RUNS = "runs"
Log = Callable[[str], None]


@dataclass(frozen=True)
class Run:
    """One trained (or reused) run: what the report aggregates over seeds."""

    label: str
    model: str
    seed: int
    source: str  # "deepmovie", or the peer library
    run_dir: Path
    summary: dict[str, Any]
    reused: bool


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``."""
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise DeepMovieError(f"--seeds {text!r}: expected comma-separated integers, e.g. 0,1,2") from None
    if len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise DeepMovieError(f"--seeds {text!r}: seeds must be distinct and not negative")
    return seeds


Planned = list[tuple[Entry, int, RunConfig]]


def plan(entries: list[Entry], setting: Setting, seeds: list[int]) -> Planned:
    """Every (entry, seed) run config, built (and so checked) before anything is written or trained."""
    return [(entry, seed, setting.config(entry, seed)) for entry in entries for seed in seeds]


def run_entries(configs: Planned, out: Path, log: Log, overwrite: bool = False) -> list[Run]:
    """Train (or reuse) each planned run in ``out/runs/<label>-seed<k>/``."""
    runs = []
    for entry, seed, config in configs:
        run_dir = out / RUNS / f"{entry.label}-seed{seed}"
        summary, reused = train_or_reuse(config, run_dir, overwrite)
        runs.append(Run(entry.label, entry.model, seed, "deepmovie", run_dir, flat(summary), reused))
        log(_line(runs[-1]))
    return runs


def train_or_reuse(config: RunConfig, run_dir: Path, overwrite: bool = False) -> tuple[dict[str, Any], bool]:
    """(summary, reused): a finished run of the same config is reused, an interrupted one resumed. A run
    of another config, or with a damaged file, is refused naming it, or trained again with ``overwrite``."""
    if (run_dir / CONFIG).is_file():
        try:
            check_files(run_dir)
            same = not differing(read_config(run_dir).resolved(), config.resolved())
        except DeepMovieError:
            if not overwrite:
                raise
            same = False
        if same:
            summary = read_summary(run_dir)
            if summary is not None:
                return summary, True
            return run(config, run_dir, resume=True, quiet=True), False
    return run(config, run_dir, overwrite=overwrite, quiet=True), False


def run_peers(
    peers: list[Peer], setting: Setting, seeds: list[int], out: Path, log: Log, overwrite: bool = False
) -> list[Run]:
    """Fit each peer on each seed's split: the same rows the entries were trained and scored on."""
    runs = []
    for seed in seeds:
        splits = None
        for peer in peers:
            run_dir = out / RUNS / f"{peer.label}-seed{seed}"
            wanted = {
                "peer": peer.label,
                "algorithm": peer.algorithm,
                "settings": peer.settings,
                "data": setting.data,
                "split": setting.split,
                "test_file": setting.test_file,
                "seed": seed,
            }
            summary = _finished_peer(run_dir, wanted, overwrite)
            reused = summary is not None
            if not reused:
                if splits is None:
                    dataset, splits = prepare(setting.rows_config(seed))
                    scale = (dataset.scale.low, dataset.scale.high)
                rank = {"k": setting.rank_k or 10, "relevant_rating": setting.relevant_rating}
                figures = run_peer(peer, splits, scale, seed, rank)
                summary = {"model": peer.label, **figures, "config": wanted}
                run_dir.mkdir(parents=True, exist_ok=True)
                write_text(run_dir / SUMMARY, json.dumps(summary, indent=2) + "\n")
            runs.append(Run(peer.label, peer.algorithm, seed, peer.library, run_dir, summary, reused))
            log(_line(runs[-1]))
    return runs


def _finished_peer(run_dir: Path, wanted: dict[str, Any], overwrite: bool) -> dict[str, Any] | None:
    """The summary of a peer's finished run of ``wanted``; None when there is none. One of another
    config, or a damaged one, is refused naming it, or (with ``overwrite``) fitted again."""
    try:
        summary = read_summary(run_dir)
    except DeepMovieError:
        if not overwrite:
            raise
        return None
    differ = differing(summary.get("config") or {}, wanted) if summary is not None else []
    if differ and not overwrite:
        raise DeepMovieError(
            f"{run_dir}: holds a peer run of another config ({', '.join(differ)} differ); choose "
            "another --out, or pass --overwrite to fit it again"
        )
    return None if differ else summary


def flat(summary: dict[str, Any]) -> dict[str, Any]:
    """A summary with a rating model's top-K figures (``ranking``, from ``rank_k``) as test figures
    beside its RMSE, so a ranking bench ranks every row by the same NDCG@K."""
    if "ranking" not in summary:
        return summary
    return {**summary, **{f"test_{name}": value for name, value in summary["ranking"].items()}}


def metric_of(summary: dict[str, Any]) -> str:
    """The test figure that ranks a row: ndcg@K (implicit, or any model ranked with rank_k), auc (like)
    or rmse (rating)."""
    if summary.get("task") == "implicit" or "ranking" in summary:
        keys = [k for k in summary if k.startswith("test_ndcg@")]
        return min(keys, key=lambda k: int(k.rsplit("@", 1)[1])).removeprefix("test_")
    return "auc" if summary.get("task") == "like" else "rmse"


def _line(run: Run) -> str:
    s, metric = run.summary, metric_of(run.summary)
    done = "reused" if run.reused else f"{s['fit_seconds']:.1f} s"
    return f"{run.label} seed {run.seed}: test {metric.upper()} {s[f'test_{metric}']:.4f} ({done})"
