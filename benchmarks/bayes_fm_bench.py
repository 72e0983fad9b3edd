"""Bayesian FM against myfm (Ohtsuki's Gibbs-sampled FM), on ML-100K fold u1 or any split.

Both train on the split's whole training part (u1.base) and are tested once on its test rows, with the
same features, rank, sweeps, burn-in and kept draws, and are scored by one function: test rows whose
user or item has no training rating get deepmovie's bias fallback, and predictions are clipped to 1..5.
Settings:

* ``user+item``: one-hot user and item (Bayesian biased MF);
* ``+implicit+flipped``: also the items each user rated and the users who rated each item, weighted
  ``1/sqrt(size)``, one prior group each (myfm: two ``RelationBlock``s and ``grouping``);
* ``all fields`` (bayes-fm's default): also release-year bucket, genres and the users' demographics.

Implicit groups come from the training rows only (Rendle et al.'s "stricter protocol"). Nothing is tuned
on the test rows: bayes-fm's defaults were chosen on validation rows carved from u1.base.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bayes_fm_bench.py --data ../shared/data/ml-100k \
        --out benchmarks/results/bayes-fm-ml-100k.md
    OMP_NUM_THREADS=1 python benchmarks/bayes_fm_bench.py --data ../shared/data/ml-1m --split random:0.1 \
        --samples 100 --burn-in 20 --out benchmarks/results/bayes-fm-ml-1m.md
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from common import write_report

from deepmovie import machine
from deepmovie.config import build_config
from deepmovie.data.interactions import Interactions
from deepmovie.evaluation import ColdFallback, Evaluator
from deepmovie.experiment import build_model, prepare
from deepmovie.splits import Split
from deepmovie.training.trainer import Trainer

SETTINGS = {
    "user+item": {"fields": ["user", "item"], "implicit": False, "flipped": False},
    "+implicit+flipped": {"fields": ["user", "item"], "implicit": True, "flipped": True},
    "all fields": {},
}


def score(predicted: np.ndarray, split: Split, fallback: ColdFallback) -> float:
    """Test RMSE with the cold rows predicted by the bias fallback, clipped to the rating scale."""
    users, items = torch.as_tensor(split.test.users).long(), torch.as_tensor(split.test.items).long()
    cold = fallback.cold(users, items).numpy()
    predicted = np.where(cold, fallback.predict(users, items).numpy(), predicted)
    predicted = np.clip(predicted, 1.0, 5.0)
    return float(np.sqrt(np.mean((predicted - split.test.ratings) ** 2)))


def run_deepmovie(
    data: Path, split_name: str, params: dict[str, Any], seed: int
) -> tuple[float, float, int, Split]:
    """(test RMSE, seconds to fit and predict, batched draws per sweep, the split) of bayes-fm trained
    on the split's whole training part."""
    config = build_config(
        {
            "model": "bayes-fm",
            "data": str(data),
            "split": split_name,
            "valid_fraction": 0.0,
            "seed": seed,
            "params": params,
        }
    )
    dataset, splits = prepare(config)
    split = splits[0]
    fallback = ColdFallback.fit(split.train)
    model = build_model(config, dataset, split, torch.device("cpu"))
    began = time.perf_counter()
    Trainer(None, quiet=True).fit(model, split.train, split.valid, Evaluator(fallback, dataset.scale), seed)
    with torch.no_grad():
        predicted = model.predict(
            torch.as_tensor(split.test.users).long(), torch.as_tensor(split.test.items).long()
        )
    seconds = time.perf_counter() - began
    steps = sum(len(side.chunks) for side in model._sides.values())
    return score(predicted.double().numpy(), split, fallback), seconds, steps, split


def import_myfm() -> types.ModuleType | None:
    """myfm, or None where it is not installed. myfm 0.4.0 imports ``pkg_resources`` only to read its
    own version, and setuptools >= 81 no longer ships it: a stand-in module lets it load."""
    if importlib.util.find_spec("myfm") is None:
        return None
    if importlib.util.find_spec("pkg_resources") is None:
        stand_in = types.ModuleType("pkg_resources")
        stand_in.DistributionNotFound, stand_in.get_distribution = Exception, None
        sys.modules["pkg_resources"] = stand_in
    import myfm

    return myfm


def implicit_rows(pairs: sp.csr_matrix) -> sp.csr_matrix:
    """Each row's members weighted 1/sqrt(count), as bayes-fm's ``implicit_norm: sqrt``."""
    pattern = (pairs != 0).astype(np.float64).tocsr()
    sizes = np.maximum(np.diff(pattern.indptr), 1)
    return sp.diags(1.0 / np.sqrt(sizes)) @ pattern


def run_myfm(
    myfm: types.ModuleType, split: Split, setting: str, args: argparse.Namespace
) -> tuple[float, float]:
    """(test RMSE, seconds to fit and predict) of myfm's Gibbs regressor on the same features."""
    train, test = split.train, split.test
    n_users, n_items = train.n_users, train.n_items
    user_part, item_part = [sp.identity(n_users, format="csr")], [sp.identity(n_items, format="csr")]
    sizes = [n_users]
    if setting == "+implicit+flipped":
        pairs = _pairs(train)
        user_part.append(implicit_rows(pairs))
        item_part.append(implicit_rows(pairs.T.tocsr()))
        sizes += [n_items, n_items, n_users]
    else:
        sizes += [n_items]
    users_block, items_block = sp.hstack(user_part, format="csr"), sp.hstack(item_part, format="csr")
    grouping = [g for g, size in enumerate(sizes) for _ in range(size)]

    def blocks(rows: Interactions) -> list:
        return [
            myfm.RelationBlock(rows.users.astype(np.int64), users_block),
            myfm.RelationBlock(rows.items.astype(np.int64), items_block),
        ]

    began = time.perf_counter()
    fm = myfm.MyFMRegressor(rank=args.dim, init_stdev=args.init_std, random_seed=args.seed)
    fm.fit(
        None,
        train.ratings.astype(np.float64),
        X_rel=blocks(train),
        grouping=grouping,
        n_iter=args.samples,
        n_kept_samples=args.samples - args.burn_in,
    )
    predicted = fm.predict(None, blocks(test))
    seconds = time.perf_counter() - began
    return score(predicted, split, ColdFallback.fit(train)), seconds


def _pairs(rows: Interactions) -> sp.csr_matrix:
    ones = np.ones(len(rows.users))
    return sp.csr_matrix((ones, (rows.users, rows.items)), shape=(rows.n_users, rows.n_items))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/ml-100k"))
    parser.add_argument("--split", default="fold:u1")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--burn-in", type=int, default=50)
    parser.add_argument("--init-std", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    args = parser.parse_args()

    myfm = import_myfm()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    kept = args.samples - args.burn_in
    common = {"dim": args.dim, "samples": args.samples, "burn_in": args.burn_in, "keep_samples": kept}
    common["init_std"] = args.init_std
    rows = []
    for setting in args.settings:
        params = {**common, **SETTINGS[setting]}
        rmse, seconds, steps, split = run_deepmovie(args.data, args.split, params, args.seed)
        rows.append(
            f"| {setting} | deepmovie bayes-fm | {rmse:.4f} | {seconds:.1f} | {seconds / args.samples:.3f} "
            f"| {steps:,} |"
        )
        print(rows[-1], flush=True)
        if myfm is not None and setting != "all fields":
            rmse, seconds = run_myfm(myfm, split, setting, args)
            rows.append(
                f"| {setting} | myfm {myfm.__version__} | {rmse:.4f} | {seconds:.1f} "
                f"| {seconds / args.samples:.3f} | one per coordinate (C++) |"
            )
            print(rows[-1], flush=True)
    cold = int(
        ColdFallback.fit(split.train)
        .cold(torch.as_tensor(split.test.users).long(), torch.as_tensor(split.test.items).long())
        .sum()
    )
    lines = [
        f"# Bayesian factorization machines on {args.data.name} `{args.split}`: bayes-fm and myfm",
        "",
        f"- command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} python "
        f"benchmarks/bayes_fm_bench.py --data {args.data} --split {args.split} --out {args.out} "
        f"--dim {args.dim} "
        f"--samples {args.samples} --burn-in {args.burn_in} --init-std {args.init_std} --seed {args.seed} "
        f"--settings {' '.join(repr(s) for s in args.settings)}`",
        f"- date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {machine.describe()}",
        f"- load average at start: {load}; at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"- both: rank {args.dim}, {args.samples} Gibbs sweeps, the last {kept} averaged, initial factor std "
        f"{args.init_std}, seed {args.seed}; train: the split's whole training part "
        f"({len(split.train):,} rows); test: its {len(split.test):,} test rows ({cold} cold: bias fallback "
        "for both)",
        "- seconds: fit plus test predictions, one thread" + ("" if myfm else "; myfm is not installed here"),
        "",
        "| features | implementation | test RMSE | seconds | s/sweep | sequential draws/sweep |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "The same model up to fixed prior constants (w0: a flat prior in bayes-fm, myfm's reg_0 = 1), the "
        "same accuracy: both are exact Gibbs samplers, so their RMSEs differ by Monte Carlo noise. "
        "Published figures quoted in issue #21: about 0.89 on ML-100K folds (Rendle et al. 2019, Bayesian "
        "timeSVD++ flipped, which also has a date feature) and 0.8925 (myfm).",
        "",
        "Speed: myfm loops over every feature and coordinate in C++. bayes-fm draws each feature's "
        "`[w, v]` jointly and every feature of a colour (no two sharing a user or an item) in one batched "
        "torch step, so a sweep costs one step per colour, ~0.2 ms of dispatch each on this CPU: a few "
        "for one-hot fields, but the implicit groups need as many colours as the most items one user rated "
        "and about the most users one item has. Exactness is what costs: parallel draws of features that "
        "share a user would not be Gibbs sampling.",
    ]
    write_report(args.out, lines)


if __name__ == "__main__":
    main()
