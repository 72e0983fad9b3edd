"""Compiled epochs of (biased) MF's fused SGD step: the same arithmetic as ``MF.sgd_step``, without torch.

On a CPU, torch spends most of a small model's step in per-call overhead (a batch of 1,024 ratings at
k=64 is ~20 tiny kernels), so a Numba loop over the epoch's rows runs the same mini-batch SGD an order of
magnitude faster. Semantics are kept exactly: within a batch every error and gradient reads the factors
as they were when the batch began (buffered), and the updates of rows that repeat add up, as
``index_add_`` does; ``batch_size: 1`` is Surprise's and cornac's per-rating SGD.

With ``threads`` > 1 the epoch's order is cut into that many contiguous parts run at once on the shared
tables without locks (Hogwild, Niu et al. 2011): ratings rarely collide on a row, so the result is the
same model at nearly linear speed-up, but no longer bit-reproducible. ``threads: 1`` is.

Numba is optional (``pip install 'deepmovie[fast]'``): import this module only where it is installed
(:func:`deepmovie.models.factorization.mf.compiled_sgd_available`); elsewhere the torch step runs.
"""

from __future__ import annotations

import numba
import numpy as np

# The kernels take three tuples: rows (users, items, ratings), tables (user_factors, item_factors,
# user_bias, item_bias; updated in place) and hyper (mean, lr, reg_user, reg_item, reg_bias).


@numba.njit(fastmath=True, cache=True, nogil=True)
def _batches(order, rows, tables, hyper, batch_size, with_biases):
    """Mini-batch SGD over ``order``; returns the sum of squared errors (before each batch's step)."""
    if batch_size == 1:
        return _per_rating(order, rows, tables, hyper, with_biases)
    users, items, ratings = rows
    user_factors, item_factors, user_bias, item_bias = tables
    mean, step, reg_user, reg_item, reg_bias = _float32(hyper)
    k = user_factors.shape[1]
    batch_size = min(batch_size, max(len(order), 1))
    p = np.empty((batch_size, k), np.float32)
    q = np.empty((batch_size, k), np.float32)
    b_user = np.zeros(batch_size, np.float32)
    b_item = np.zeros(batch_size, np.float32)
    error = np.empty(batch_size, np.float32)
    total = 0.0
    for start in range(0, len(order), batch_size):
        size = min(batch_size, len(order) - start)
        for j in range(size):
            row = order[start + j]
            u, i = users[row], items[row]
            dot = np.float32(0.0)
            for f in range(k):
                p[j, f] = user_factors[u, f]
                q[j, f] = item_factors[i, f]
                dot += p[j, f] * q[j, f]
            e = dot - ratings[row]
            if with_biases:
                b_user[j], b_item[j] = user_bias[u], item_bias[i]
                e += mean + b_user[j] + b_item[j]
            error[j] = e
            total += e * e
        for j in range(size):
            row = order[start + j]
            u, i, e = users[row], items[row], error[j]
            if with_biases:
                user_bias[u] -= step * (e + reg_bias * b_user[j])
                item_bias[i] -= step * (e + reg_bias * b_item[j])
            for f in range(k):
                user_factors[u, f] -= step * (e * q[j, f] + reg_user * p[j, f])
                item_factors[i, f] -= step * (e * p[j, f] + reg_item * q[j, f])
    return total


@numba.njit(fastmath=True, cache=True, nogil=True)
def _per_rating(order, rows, tables, hyper, with_biases):
    """``_batches`` at ``batch_size`` 1 (Surprise's and cornac's SGD), updating in place: no buffers."""
    users, items, ratings = rows
    user_factors, item_factors, user_bias, item_bias = tables
    mean, step, reg_user, reg_item, reg_bias = _float32(hyper)
    k = user_factors.shape[1]
    total = 0.0
    for row in order:
        u, i = users[row], items[row]
        dot = np.float32(0.0)
        for f in range(k):
            dot += user_factors[u, f] * item_factors[i, f]
        e = dot - ratings[row]
        if with_biases:
            e += mean + user_bias[u] + item_bias[i]
            user_bias[u] -= step * (e + reg_bias * user_bias[u])
            item_bias[i] -= step * (e + reg_bias * item_bias[i])
        total += e * e
        for f in range(k):
            p, q = user_factors[u, f], item_factors[i, f]
            user_factors[u, f] = p - step * (e * q + reg_user * p)
            item_factors[i, f] = q - step * (e * p + reg_item * q)
    return total


@numba.njit(cache=True, nogil=True)
def _float32(hyper):
    """(mean, step, reg_user, reg_item, reg_bias) as float32, as torch computes them; step = 2 lr (the
    gradient of a squared error)."""
    mean, lr, reg_user, reg_item, reg_bias = hyper
    f32 = np.float32
    return f32(mean), f32(2.0 * lr), f32(reg_user), f32(reg_item), f32(reg_bias)


@numba.njit(parallel=True, cache=True, nogil=True)
def _hogwild(order, rows, tables, hyper, batch_size, with_biases, parts):
    """``_batches`` on ``parts`` contiguous parts of ``order`` at once, sharing the tables."""
    totals = np.zeros(parts)
    n = len(order)
    for t in numba.prange(parts):
        part = order[n * t // parts : n * (t + 1) // parts]
        totals[t] = _batches(part, rows, tables, hyper, batch_size, with_biases)
    return totals.sum()


def sgd_epoch(
    order: np.ndarray,
    rows: tuple[np.ndarray, np.ndarray, np.ndarray],
    factors: tuple[np.ndarray, np.ndarray],
    biases: tuple[np.ndarray, np.ndarray] | None,
    *,
    mean: float,
    lr: float,
    reg: tuple[float, float, float],
    batch_size: int,
    threads: int,
) -> float:
    """One epoch over training ``rows`` (users, items, ratings) in ``order``, updating the float32
    ``factors`` (users', items') and ``biases`` (None for plain MF) in place; ``reg`` is (user, item,
    bias); ``threads`` 0 means every core. Returns the sum of squared errors."""
    empty = np.zeros(0, np.float32)
    tables = (*factors, *(biases if biases is not None else (empty, empty)))
    hyper = (float(mean), float(lr), *(float(r) for r in reg))
    args = (order, rows, tables, hyper, int(batch_size), biases is not None)
    parts = min(threads or numba.config.NUMBA_NUM_THREADS, numba.config.NUMBA_NUM_THREADS, max(len(order), 1))
    if parts <= 1:
        return float(_batches(*args))
    previous = numba.get_num_threads()
    numba.set_num_threads(parts)
    try:
        return float(_hogwild(*args, parts))
    finally:
        numba.set_num_threads(previous)
