"""``deepmovie bench``: several models x several seeds (+ peers) on one split, one honest table.

The pieces: :mod:`entries` (what to run), :mod:`suites` (the seed documents' tables), :mod:`runner`
(resumable runs), :mod:`peers` (Surprise on the same rows), :mod:`results` (mean ± std over seeds),
:mod:`report` and :mod:`plots` (what is written).
"""

from __future__ import annotations

import datetime
import os
import platform
import time
from pathlib import Path
from typing import Any

from deepmovie.bench.entries import Setting, check_labels, parse_entries
from deepmovie.bench.peers import Peer, get_peers, peer_versions
from deepmovie.bench.report import RESULTS, Meta, write_all
from deepmovie.bench.results import Missing, Row, aggregate
from deepmovie.bench.runner import RUNS, Log, parse_seeds, plan, run_entries, run_peers
from deepmovie.bench.suites import SUITES, get_suite
from deepmovie.data.catalog import DEFAULT_DATASET
from deepmovie.errors import DeepMovieError
from deepmovie.files import write_text
from deepmovie.models import MODELS
from deepmovie.rundir import claim

__all__ = ["SUITES", "parse_seeds", "run_bench"]


def run_bench(
    models: list[str],
    *,
    out: Path,
    suite: str | None = None,
    data: str | None = None,
    split: str | None = None,
    test_file: str | None = None,
    seeds: str = "0",
    tuned: bool = False,
    config_dir: Path = Path("configs"),
    params: dict[str, Any] | None = None,
    peers: list[str] | None = None,
    device: str | None = None,
    max_memory: int | None = None,
    rank_k: int | None = None,
    relevant_rating: float = 4.0,
    command: str = "",
    notes: list[str] | None = None,
    overwrite: bool = False,
    log: Log = print,
) -> list[Row]:
    """Run the bench and write ``out/results.{json,csv,md}`` and the plots; returns the table's rows.

    ``out`` is new, empty or an earlier bench's (whose runs are reused or resumed); ``overwrite`` takes
    any folder, and trains again the runs there of another config or with a damaged file."""
    seed_list = parse_seeds(seeds)
    if split is not None and test_file is not None:
        raise DeepMovieError("--split and --test-file are exclusive: the test file is the split")
    chosen = get_suite(suite) if suite is not None else None
    named = parse_entries(models)
    for entry in named:  # asked for by name: a typo is an error, not a "missing" row
        MODELS.get(entry.model)
    listed = chosen.resolved(config_dir) if chosen else []
    entries = listed + named
    if not entries:
        raise DeepMovieError("bench needs MODEL[,MODEL...] or --suite NAME (see `deepmovie models`)")
    check_labels(entries)
    missing = [Missing(e.label, e.model, why) for e in listed if (why := e.missing()) is not None]
    peer_list = get_peers(peers or [])
    setting = Setting(
        data=data or (chosen.data if chosen else DEFAULT_DATASET),
        split=None if test_file else split or (chosen.split if chosen else None),
        test_file=test_file,
        device=device,
        max_memory=max_memory,
        params=params or {},
        tuned=tuned,
        config_dir=config_dir,
        rank_k=rank_k,
        relevant_rating=relevant_rating,
    )
    planned = plan([e for e in entries if e.missing() is None], setting, seed_list)
    claim(out, (RUNS, RESULTS), "a bench folder", overwrite=overwrite)
    (out / RUNS).mkdir(exist_ok=True)
    ignore = out / ".gitignore"  # runs/ holds weights and checkpoints; the results beside it are committed
    if not ignore.exists():
        write_text(ignore, "runs/\n")
    load_start, began = _load(), time.perf_counter()
    runs = run_entries(planned, out, log, overwrite)
    runs += run_peers(peer_list, setting, seed_list, out, log, overwrite)
    rows = aggregate(runs)
    from deepmovie.bench.plots import write_plots  # matplotlib: only once there is something to draw

    plots = write_plots(out, rows, runs)
    first = runs[0].summary if runs else {}
    meta = Meta(
        title=chosen.title if chosen else f"Bench: {', '.join(e.label for e in entries)}",
        command=command or "(Python API)",
        date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        machine=first.get("machine") or _machine(),
        versions=_versions(peer_list),
        data=first.get("dataset", setting.data),
        split=_split_text(setting, rows),
        seeds=seed_list,
        threads=f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}",
        load_average={"start": load_start, "end": _load()},
        notes=[
            *([f"reproduces the table of {chosen.source}"] if chosen else []),
            *(notes or []),
            f"wall time of this invocation: {(time.perf_counter() - began) / 60:.1f} min "
            f"({sum(r.reused for r in runs)} of {len(runs)} runs reused from an earlier invocation)",
        ],
        peers={p.label: f"{p.algorithm}({p.settings})" for p in peer_list},
    )
    write_all(out, meta, rows, missing, plots)
    return rows


def _split_text(setting: Setting, rows: list[Row]) -> str:
    where = f"--test-file {setting.test_file}" if setting.test_file else setting.split or "random:0.1"
    hashes = sorted({h[:8] for r in rows for h in r.split_hashes})
    return f"{where} (test-row hash {', '.join(hashes) or '-'})"


def _machine() -> str:
    from deepmovie import machine

    return machine.describe()


def _versions(peers: list[Peer]) -> dict[str, str]:
    import numpy
    import torch

    from deepmovie import __version__

    versions = {
        "deepmovie": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
    }
    if peers:
        versions["peers"] = peer_versions(peers)
    return versions


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"
