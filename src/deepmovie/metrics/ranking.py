"""Top-N metrics over full item rankings, computed for batches of users at once.

Scores come from a callable ``score(users) -> (len(users), n_items) tensor``; training items are
masked to -inf before ``torch.topk`` so they are never recommended back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp
import torch

METRICS = ("hr", "ndcg", "precision", "recall", "map")


def ranking_metrics(
    score: Callable[[torch.Tensor], torch.Tensor],
    train: sp.csr_matrix,
    relevant: sp.csr_matrix,
    k: int = 10,
    batch_size: int = 1024,
    extra: Sequence[tuple[str, int]] = (),
) -> dict[str, float]:
    """HR@K, NDCG@K, precision@K, recall@K, MAP@K and catalogue coverage@K, plus each ``(metric,
    cutoff)`` of ``extra`` (e.g. ``("recall", 20)``, ``("ndcg", 100)``), from one top-N per batch.

    ``train`` and ``relevant`` are user x item matrices whose non-zeros mark the items to exclude
    and the held-out relevant items. Users with no relevant item are skipped.
    """
    users = np.flatnonzero(np.diff(relevant.indptr) > 0)
    n_items = train.shape[1]
    depth = min(max([k, *(cutoff for _, cutoff in extra)]), n_items)
    wanted = [(name, k) for name in METRICS] + [(name, c) for name, c in extra if (name, c) not in METRICS]
    totals = dict.fromkeys(wanted, 0.0)
    recommended = torch.zeros(n_items, dtype=torch.bool)
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        scores = score(torch.from_numpy(batch)).detach().to("cpu", torch.float64)
        scores[_dense_rows(train, batch)] = -torch.inf
        top_scores, top = torch.topk(scores, depth, dim=1)
        shown = torch.isfinite(top_scores)  # a user with fewer than K unseen items gets fewer
        recommended[top[:, :k][shown[:, :k]]] = True
        truth = _dense_rows(relevant, batch)
        hits = (torch.gather(truth, 1, top) & shown).to(torch.float64)
        n_relevant = truth.sum(dim=1).to(torch.float64)
        for name, cutoff in wanted:
            totals[(name, cutoff)] += float(_per_user(name, hits[:, :cutoff], n_relevant, cutoff).sum())
    count = max(len(users), 1)
    result = {f"{name}@{cutoff}": value / count for (name, cutoff), value in totals.items()}
    result[f"coverage@{k}"] = float(recommended.sum()) / n_items
    result["ranked_users"] = len(users)
    return result


def _per_user(name: str, hits: torch.Tensor, n_relevant: torch.Tensor, k: int) -> torch.Tensor:
    """One metric at cutoff ``k`` for each user, from their 0/1 ``hits`` in the top ``k``."""
    found = hits.sum(1)
    if name == "hr":
        return (found > 0).to(torch.float64)
    if name == "precision":
        return found / k
    if name == "recall":
        return found / n_relevant
    discounts = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64))
    if name == "ndcg":
        ideal = torch.cumsum(discounts, 0)[(n_relevant.clamp(max=k) - 1).long()]
        return (hits * discounts[: hits.shape[1]]).sum(1) / ideal
    if name == "map":
        ranks = torch.arange(1, hits.shape[1] + 1, dtype=torch.float64)
        return (torch.cumsum(hits, 1) / ranks * hits).sum(1) / n_relevant.clamp(max=k)
    raise ValueError(f"unknown ranking metric {name!r} (known: {', '.join(METRICS)})")


def _dense_rows(matrix: sp.csr_matrix, rows: np.ndarray) -> torch.Tensor:
    """Boolean (len(rows), n_items) mask of a CSR matrix's non-zeros: O(batch x items) memory."""
    sub = matrix[rows]
    mask = torch.zeros(sub.shape, dtype=torch.bool)
    row_ids = np.repeat(np.arange(len(rows)), np.diff(sub.indptr))
    mask[torch.from_numpy(row_ids), torch.from_numpy(sub.indices.astype(np.int64))] = True
    return mask
