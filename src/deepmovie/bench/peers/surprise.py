"""Surprise's SVD, SVD++ and KNNBaseline on the bench's split (``--peers surprise``): rating peers.

Its trainset is built from our index arrays, so both sides see the same rows by construction, not by
re-reading and re-parsing files.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from typing import Any

import numpy as np

from deepmovie.bench.peers import Peer
from deepmovie.data.interactions import Interactions
from deepmovie.metrics import mae, rmse
from deepmovie.splits import Split

PACKAGE = "surprise"


# Settings. SVD: 150 factors, 30 epochs, lr 0.01, reg 0.1, the best of five settings (Surprise's
# defaults 100/20/0.005/0.02 among them: valid 0.877 against 0.865) on the validation rows of the
# ml-latest-small seed42 training file, never its test rows. SVD++: Surprise's defaults. KNNBaseline:
# item-based with the Pearson-baseline similarity, the strong neighbourhood set-up of Surprise's docs.
PEERS = (
    Peer(
        "surprise",
        "surprise-svd",
        "SVD",
        {"n_factors": 150, "n_epochs": 30, "lr_all": 0.01, "reg_all": 0.1},
        note="Surprise SVD, settings chosen on validation rows",
    ),
    Peer(
        "surprise",
        "surprise-svdpp",
        "SVDpp",
        {"n_factors": 20, "n_epochs": 20},
        note="Surprise SVD++ (defaults)",
    ),
    Peer(
        "surprise",
        "surprise-knnbaseline",
        "KNNBaseline",
        {"k": 40, "sim_options": {"name": "pearson_baseline", "user_based": False}, "verbose": False},
        seeded=False,  # deterministic: takes no random_state
        note="Surprise KNNBaseline, item-based pearson_baseline, k 40",
    ),
)


def version() -> str:
    import surprise

    return f"scikit-surprise {surprise.__version__}"


def run(peer: Peer, splits: list[Split], scale: tuple[float, float], seed: int, **_: Any) -> dict[str, Any]:
    """Fit ``peer`` on each fold's training part and score its test rows: a run summary's figures."""
    folds = [_fit_fold(peer, split, scale, seed) for split in splits]
    summary = dict(folds[0])
    for key in ("test_rmse", "test_mae", "fit_seconds"):
        summary[key] = statistics.fmean(f[key] for f in folds)
    summary["split_hash"] = "+".join(f["split_hash"] for f in folds)
    return summary


def _fit_fold(peer: Peer, split: Split, scale: tuple[float, float], seed: int) -> dict[str, Any]:
    import surprise

    train = split.train.concat(split.valid) if len(split.valid) else split.train
    trainset = to_trainset(train, scale)
    settings = {**peer.settings, **({"random_state": seed} if peer.seeded else {})}
    algo = getattr(surprise, peer.algorithm)(**settings)
    began = time.perf_counter()
    algo.fit(trainset)
    fit_seconds = time.perf_counter() - began
    test = split.test
    predictions = algo.test(
        list(zip(test.users.tolist(), test.items.tolist(), test.ratings.tolist(), strict=True))
    )
    estimates = np.array([p.est for p in predictions])
    cold = ~(np.isin(test.users, train.users) & np.isin(test.items, train.items))
    epochs = peer.settings.get("n_epochs")
    return {
        **split.record(),
        "task": "rating",
        "monitor": None,
        "n_train": len(train),
        "n_valid": 0,
        "n_test": len(test),
        "test_rmse": rmse(estimates, test.ratings),
        "test_mae": mae(estimates, test.ratings),
        "cold_test_rows": int(cold.sum()),
        "cold_policy": "Surprise's default: the training mean where user or item is unknown",
        "fit_seconds": fit_seconds,
        "epoch_seconds": [fit_seconds / epochs] * epochs if epochs else [],
        "train_samples_per_second": len(train) * epochs / fit_seconds if epochs else None,
        "parameters": _parameters(algo),
        "device": "cpu",
    }


def to_trainset(rows: Interactions, scale: tuple[float, float]) -> Any:
    """A Surprise ``Trainset`` of our rows, raw ids = our contiguous indices (no pandas, no files)."""
    from surprise import Trainset

    users, user_inner = np.unique(rows.users, return_inverse=True)
    items, item_inner = np.unique(rows.items, return_inverse=True)
    ur: defaultdict[int, list[tuple[int, float]]] = defaultdict(list)
    ir: defaultdict[int, list[tuple[int, float]]] = defaultdict(list)
    for u, i, r in zip(user_inner.tolist(), item_inner.tolist(), rows.ratings.tolist(), strict=True):
        ur[u].append((i, r))
        ir[i].append((u, r))
    return Trainset(
        ur,
        ir,
        len(users),
        len(items),
        len(rows),
        scale,
        {int(raw): inner for inner, raw in enumerate(users)},
        {int(raw): inner for inner, raw in enumerate(items)},
    )


def _parameters(algo: Any) -> int:
    """Learned numbers: factors and biases, or the item-item similarity matrix and baselines."""
    names = ("pu", "qi", "bu", "bi", "yj", "sim")
    return int(sum(np.asarray(getattr(algo, n)).size for n in names if getattr(algo, n, None) is not None))
