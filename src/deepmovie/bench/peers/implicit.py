"""The ``implicit`` package's ALS and BPR on the bench's split (``--peers implicit``): ranking peers.

Each trains on the interactions of the training part (every rating, as our ranking models by default)
built from our index arrays; its factors score every item, and our own ranking metrics judge the top-N
with the same exclusions (train + valid items) and the same relevance (test ratings >= the bench's
``relevant_rating``) as DeepMovie's models: one protocol, one implementation of it.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from deepmovie.bench.peers import Peer
from deepmovie.evaluation import RANKING_EXTRA
from deepmovie.metrics import ranking_metrics
from deepmovie.splits import Split

PACKAGE = "implicit"
# Settings: implicit's own defaults but 64 factors (the size our ials benchmark uses); BPR with more
# iterations than its default 100 did not score better on ML-100K u1's validation rows.
PEERS = (
    Peer(
        "implicit",
        "implicit-als",
        "AlternatingLeastSquares",
        {"factors": 64, "regularization": 0.01, "alpha": 1.0, "iterations": 15},
        note="implicit ALS (Hu et al. 2008), 64 factors, otherwise its defaults",
    ),
    Peer(
        "implicit",
        "implicit-bpr",
        "BayesianPersonalizedRanking",
        {"factors": 64, "learning_rate": 0.01, "regularization": 0.01, "iterations": 100},
        note="implicit BPR, 64 factors, otherwise its defaults",
    ),
)


def version() -> str:
    import implicit

    return f"implicit {implicit.__version__}"


def run(
    peer: Peer, splits: list[Split], scale: tuple[float, float], seed: int, *, k: int, relevant_rating: float
) -> dict[str, Any]:
    folds = [_fit_fold(peer, split, seed, k, relevant_rating) for split in splits]
    summary = dict(folds[0])
    for key in [k for k, v in folds[0].items() if k.startswith("test_") and isinstance(v, float)]:
        summary[key] = statistics.fmean(f[key] for f in folds)
    summary["fit_seconds"] = statistics.fmean(f["fit_seconds"] for f in folds)
    summary["split_hash"] = "+".join(f["split_hash"] for f in folds)
    return summary


def _fit_fold(peer: Peer, split: Split, seed: int, k: int, relevant_rating: float) -> dict[str, Any]:
    import implicit.cpu.als
    import implicit.cpu.bpr
    from threadpoolctl import threadpool_limits

    train = split.train.concat(split.valid) if len(split.valid) else split.train
    seen = sp.csr_matrix(train.csr())
    user_items = seen.copy()
    user_items.data = np.ones_like(user_items.data, dtype=np.float32)
    module = implicit.cpu.als if peer.algorithm == "AlternatingLeastSquares" else implicit.cpu.bpr
    with threadpool_limits(1, "blas"):  # implicit's own threads do the work; BLAS threads only contend
        algo = getattr(module, peer.algorithm)(**peer.settings, random_state=seed)
        began = time.perf_counter()
        algo.fit(user_items.astype(np.float32), show_progress=False)
        fit_seconds = time.perf_counter() - began
    users = torch.from_numpy(np.asarray(algo.user_factors))
    items = torch.from_numpy(np.asarray(algo.item_factors))
    relevant = split.test.subset(split.test.ratings >= relevant_rating).csr()
    figures = ranking_metrics(lambda batch: users[batch] @ items.T, seen, relevant, k=k, extra=RANKING_EXTRA)
    iterations = peer.settings["iterations"]
    return {
        **split.record(),
        "task": "implicit",
        "monitor": None,
        "n_train": len(train),
        "n_valid": 0,
        "n_test": len(split.test),
        **{f"test_{name}": value for name, value in figures.items()},
        "cold_test_rows": 0,
        "fit_seconds": fit_seconds,
        "epoch_seconds": [fit_seconds / iterations] * iterations,
        "train_samples_per_second": user_items.nnz * iterations / fit_seconds,
        "parameters": int(users.numel() + items.numel()),
        "device": "cpu",
    }
