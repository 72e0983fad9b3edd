"""Synthetic ratings in the shape of a MovieLens release, with a known structure and noise floor.

Real MovieLens files cannot always be redistributed, and a model's error on them has no known floor. A
synthetic folder fixes both: benchmarks can run at full ML-20M size anywhere, and ``truth.json`` says how
low an RMSE can go. The model is the one biased matrix factorization assumes::

    rating = round_to_grid(mu + b_user + b_item + u . v + noise * N(0, 1))   clipped to the scale

Who rates what follows the MovieLens marginals: heavy-tailed user activity (lognormal, every user at
least 20 ratings), long-tailed item popularity (Zipf-Mandelbrot), items drawn without replacement so no
(user, item) pair repeats. Everything is vectorized NumPy, generated in chunks of users and written as it
goes, so ML-20M size stays far below 1 GB of memory.
"""

from __future__ import annotations

import json
import math
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from scipy.special import ndtr
from tqdm.auto import tqdm

from deepmovie.errors import DeepMovieError

RANK = 10
MIN_PER_USER = 20  # MovieLens keeps only users with at least 20 ratings
MAX_USER_SHARE = 0.6  # no user rates more than this share of the items (ML-1M's heaviest: 62%)
CHUNK_ROWS = 1 << 20  # ratings generated (and written) per step
GUMBEL_CELLS = 1 << 22  # users x items scores per exact-sampling batch
MAX_ROUNDS = 6  # rejection rounds before the exact sampler takes the last few draws
USER_BIAS_STD, ITEM_BIAS_STD, INTERACTION_STD = 0.4, 0.5, 0.4
POPULARITY_BIAS = 0.4  # correlation of item bias with log popularity: popular films rate higher
ACTIVITY_SIGMA = 1.2  # lognormal spread of ratings per user beyond the minimum
GENRES = (
    "Drama", "Comedy", "Thriller", "Romance", "Action", "Crime", "Horror", "Documentary", "Adventure",
    "Sci-Fi", "Mystery", "Fantasy", "War", "Children", "Musical", "Animation", "Western", "Film-Noir",
)  # fmt: skip
GENRE_WEIGHTS = np.array([13, 8.4, 4.2, 4.1, 3.5, 2.9, 2.6, 2.5, 2.3, 1.7, 1.5, 1.4, 1.2, 1.1, 1, 1, 0.7, 0.3])


@dataclass(frozen=True)
class Shape:
    """Sizes, id range, time span and popularity curve of one MovieLens release."""

    users: int
    items: int
    ratings: int
    max_item_id: int  # MovieLens movie ids have gaps: they run up to this
    start: int  # first and last timestamp of the release
    end: int
    zipf_a: float  # item weight of popularity rank r: (r + zipf_q) ** -zipf_a
    zipf_q: float


SHAPES = {
    "ml-100k": Shape(943, 1_682, 100_000, 1_682, 874_724_710, 893_286_638, 1.6, 180.0),
    "ml-1m": Shape(6_040, 3_706, 1_000_209, 3_952, 956_703_932, 1_046_454_590, 1.6, 400.0),
    "ml-10m": Shape(69_878, 10_677, 10_000_054, 65_133, 789_652_009, 1_231_131_736, 1.4, 300.0),
    "ml-20m": Shape(138_493, 26_744, 20_000_263, 131_262, 789_652_009, 1_427_784_002, 1.3, 300.0),
}
SCALES = {"whole": (1.0, 5.0, 1.0), "half": (0.5, 5.0, 0.5)}
MEANS = {"whole": 3.62, "half": 3.55}  # mu, so that the rounded, clipped mean lands near MovieLens' 3.53


def synthesize(
    shape: str,
    out: Path,
    *,
    seed: int = 0,
    noise: float = 0.8,
    scale: str = "whole",
    quiet: bool = False,
    sizes: tuple[int, int, int] | None = None,
) -> str:
    """Write ``out/ratings.csv``, ``movies.csv`` and ``truth.json``; return a short report.

    ``sizes=(users, items, ratings)`` overrides the shape's counts (tests use tiny ones); the shape still
    sets the time span and popularity curve.
    """
    if shape not in SHAPES:
        raise DeepMovieError(f"unknown synth shape {shape!r}: choose one of {', '.join(SHAPES)}")
    if not (isinstance(noise, int | float) and math.isfinite(noise) and noise >= 0):
        raise DeepMovieError(f"--noise {noise}: must be a finite number >= 0 (the noise std)")
    if scale not in SCALES:
        raise DeepMovieError(f"--scale {scale!r}: choose 'whole' (1..5) or 'half' (0.5..5)")
    if seed < 0:
        raise DeepMovieError(f"--seed {seed}: must be >= 0")
    spec = SHAPES[shape]
    if sizes is not None:
        spec = _resized(spec, *sizes)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DeepMovieError(f"--out {out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)

    began = time.perf_counter()
    truth = _generate(spec, out, seed=seed, noise=float(noise), scale=scale, quiet=quiet)
    truth.update(shape=shape, seconds=round(time.perf_counter() - began, 2))
    (out / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    return (
        f"{shape}: {spec.ratings:,} ratings, {spec.users:,} users, {spec.items:,} items, "
        f"{scale} stars, noise {noise:g} -> noise floor RMSE {truth['noise_floor']:.4f} "
        f"(best predictor {truth['bayes_floor']:.4f}), {truth['seconds']:.1f} s\n"
        f"wrote {out / 'ratings.csv'} (+ movies.csv, truth.json)"
    )


def _resized(spec: Shape, users: int, items: int, ratings: int) -> Shape:
    cap = math.floor(MAX_USER_SHARE * items)
    if users < 1 or cap < MIN_PER_USER:
        raise DeepMovieError(
            f"sizes {users, items, ratings}: need >= 1 user and >= "
            f"{math.ceil(MIN_PER_USER / MAX_USER_SHARE)} items"
        )
    if not (max(MIN_PER_USER * users, items) <= ratings <= cap * users):
        raise DeepMovieError(
            f"sizes {users, items, ratings}: ratings must be between {max(MIN_PER_USER * users, items):,} "
            f"(>= {MIN_PER_USER} per user, >= 1 per item) and {cap * users:,} (<= {cap} per user)"
        )
    max_id = max(items, round(items * spec.max_item_id / spec.items))
    return Shape(users, items, ratings, max_id, spec.start, spec.end, spec.zipf_a, spec.zipf_q)


def _generate(spec: Shape, out: Path, *, seed: int, noise: float, scale: str, quiet: bool) -> dict:
    low, high, step = SCALES[scale]
    mu = MEANS[scale]
    counts = np.zeros(0)
    sequence = np.random.SeedSequence(seed)
    rng = np.random.default_rng(sequence.spawn(1)[0])

    counts = _user_counts(rng, spec)
    starts = np.concatenate([[0], np.cumsum(counts)])
    # Popularity: a random item gets each rank, so ids carry no signal.
    weights = (np.arange(1, spec.items + 1) + spec.zipf_q) ** -spec.zipf_a
    popularity = np.empty(spec.items)
    popularity[rng.permutation(spec.items)] = weights / weights.sum()
    cdf = np.cumsum(popularity)
    cdf /= cdf[-1]
    log_pop = np.log(popularity)
    z_pop = (log_pop - log_pop.mean()) / max(log_pop.std(), 1e-12)
    item_bias = ITEM_BIAS_STD * (
        POPULARITY_BIAS * z_pop + math.sqrt(1 - POPULARITY_BIAS**2) * rng.standard_normal(spec.items)
    )
    factor_std = (INTERACTION_STD**2 / RANK) ** 0.25  # so that u . v has std INTERACTION_STD
    item_factors = rng.normal(0, factor_std, (spec.items, RANK)).astype(np.float32)
    item_raw = np.sort(rng.choice(spec.max_item_id, spec.items, replace=False)) + 1
    # Every item gets one rating from a random user's slot, so all items appear in the file.
    slots = rng.choice(spec.ratings, spec.items, replace=False)
    seed_users = np.searchsorted(starts, slots, side="right") - 1
    seed_items = rng.permutation(spec.items)
    order = np.argsort(seed_users, kind="stable")
    seed_users, seed_items = seed_users[order], seed_items[order]

    bounds = _chunks(counts)
    chunk_seeds = sequence.spawn(1 + len(bounds))[1:]
    _write_movies(out / "movies.csv", rng, item_raw, spec)

    totals = {"rows": 0, "sse": 0.0, "sse_bayes": 0.0, "sum": 0.0, "sum_sq": 0.0}
    levels = np.round(np.arange(low, high + step / 2, step), 1)
    level_text = pa.array([f"{v:.1f}" for v in levels])
    path, tmp = out / "ratings.csv", out / f"ratings.csv.tmp{os.getpid()}"
    options = pacsv.WriteOptions(include_header=False, quoting_style="none")
    schema = pa.schema(
        [("userId", pa.int32()), ("movieId", pa.int32()),
         ("rating", pa.dictionary(pa.int8(), pa.string())), ("timestamp", pa.int64())]
    )  # fmt: skip
    bar = tqdm(total=spec.ratings, unit="rows", unit_scale=True, desc="synth", disable=quiet or None)
    pending: Future | None = None
    try:
        with (
            open(tmp, "wb") as handle,
            ThreadPoolExecutor(1) as writer_thread,
            bar,
        ):
            handle.write(b"userId,movieId,rating,timestamp\n")
            writer = pacsv.CSVWriter(handle, schema, write_options=options)
            for chunk_seed, (first, last) in zip(chunk_seeds, bounds, strict=True):
                chunk_rng = np.random.default_rng(chunk_seed)
                lo, hi = np.searchsorted(seed_users, [first, last])
                users, items, stamps = _chunk_pairs(
                    chunk_rng, counts[first:last], first, seed_users[lo:hi] - first, seed_items[lo:hi],
                    cdf, log_pop, popularity, spec,
                )  # fmt: skip
                # Ratings: the latent model, Gaussian noise, then the star grid.
                n_local = last - first
                user_bias = chunk_rng.normal(0, USER_BIAS_STD, n_local).astype(np.float32)
                user_factors = chunk_rng.normal(0, factor_std, (n_local, RANK)).astype(np.float32)
                signal = np.einsum("ij,ij->i", user_factors[users], item_factors[items])
                signal += user_bias[users]
                signal += item_bias[items].astype(np.float32)
                signal += np.float32(mu)
                observed = signal + np.float32(noise) * chunk_rng.standard_normal(len(signal), np.float32)
                grid = np.clip(np.rint((observed - low) / step), 0, len(levels) - 1).astype(np.int8)
                rating = low + step * grid.astype(np.float64)
                totals["sse"] += float(np.square(rating - signal).sum())
                totals["sse_bayes"] += float(np.square(rating - _expected(signal, noise, low, step, levels))
                                             .sum())  # fmt: skip
                totals["sum"] += float(rating.sum())
                totals["sum_sq"] += float(np.square(rating).sum())
                totals["rows"] += len(rating)
                table = pa.table(
                    [pa.array(users + first + 1, pa.int32()), pa.array(item_raw[items], pa.int32()),
                     pa.DictionaryArray.from_arrays(grid, level_text), pa.array(stamps)],
                    schema=schema,
                )  # fmt: skip
                if pending is not None:
                    pending.result()
                pending = writer_thread.submit(writer.write_table, table)
                bar.update(len(rating))
            if pending is not None:
                pending.result()
            writer.close()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    if totals["rows"] != spec.ratings:  # the sampler guarantees this: a mismatch is a bug
        raise RuntimeError(f"generated {totals['rows']} ratings, expected {spec.ratings}")
    n = totals["rows"]
    mean = totals["sum"] / n
    return {
        "seed": seed,
        "users": spec.users,
        "items": spec.items,
        "ratings": n,
        "scale": scale,
        "rank": RANK,
        "noise": noise,
        "noise_floor": math.sqrt(totals["sse"] / n),
        "noise_floor_definition": "RMSE between the ratings and the noiseless continuous prediction "
        "mu + b_user + b_item + u.v",
        "bayes_floor": math.sqrt(totals["sse_bayes"] / n),
        "bayes_floor_definition": "RMSE of the best possible predictor: the expected rounded, clipped "
        "rating given the noiseless prediction",
        "global_mean": mu,
        "rating_mean": mean,
        "rating_std": math.sqrt(max(totals["sum_sq"] / n - mean**2, 0.0)),
        "user_bias_std": USER_BIAS_STD,
        "item_bias_std": ITEM_BIAS_STD,
        "interaction_std": INTERACTION_STD,
        "popularity": {"zipf_a": spec.zipf_a, "zipf_q": spec.zipf_q},
    }


def _user_counts(rng: np.random.Generator, spec: Shape) -> np.ndarray:
    """Ratings per user: 20 plus a lognormal share, capped, summing exactly to the requested rows."""
    cap = math.floor(MAX_USER_SHARE * spec.items) - MIN_PER_USER
    extra_total = spec.ratings - MIN_PER_USER * spec.users
    weights = rng.lognormal(0.0, ACTIVITY_SIGMA, spec.users)
    extra = np.minimum(np.floor(weights * (extra_total / weights.sum())), cap).astype(np.int64)
    while (left := extra_total - int(extra.sum())) > 0:
        room = np.flatnonzero(extra < cap)
        if left >= len(room):  # spread proportionally over users below the cap
            share = np.floor(weights[room] * (left / weights[room].sum())).astype(np.int64)
            share = np.maximum(share, 1) if share.sum() == 0 else share
            extra[room] = np.minimum(extra[room] + share, cap)
        else:  # one more rating for `left` users, likelier for the active ones
            chosen = rng.choice(room, left, replace=False, p=weights[room] / weights[room].sum())
            extra[chosen] += 1
    return extra + MIN_PER_USER


def _chunks(counts: np.ndarray) -> list[tuple[int, int]]:
    """Consecutive user ranges of about CHUNK_ROWS ratings each."""
    ends = np.cumsum(counts)
    bounds, first = [], 0
    while first < len(counts):
        last = int(np.searchsorted(ends, ends[first] - counts[first] + CHUNK_ROWS, side="right"))
        last = max(last, first + 1)
        bounds.append((first, last))
        first = last
    return bounds


def _chunk_pairs(
    rng: np.random.Generator,
    counts: np.ndarray,
    first_user: int,
    forced_users: np.ndarray,
    forced_items: np.ndarray,
    cdf: np.ndarray,
    log_pop: np.ndarray,
    popularity: np.ndarray,
    spec: Shape,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(local user, item, timestamp) of one chunk, sorted by user then item like MovieLens files.

    Each user's items are the forced ones plus draws proportional to popularity without replacement:
    draw with replacement and reject repeats (cheap while a user has seen little of the catalogue), and
    let the exact Gumbel top-k sampler finish users who would need many rejections. Both continue the
    same sequential sampling, so the mix is exact. The draw order doubles as the time order: popular
    films get rated first, as on MovieLens' sign-up page.
    """
    n_items = spec.items
    n_users = len(counts)
    keys = [forced_users.astype(np.int64) * n_items + forced_items]
    orders = [rng.random(len(forced_users)) * (MAX_ROUNDS + 1)]  # forced items: any time
    have = np.sort(keys[0])
    deficit = counts - np.bincount(forced_users, minlength=n_users)
    mass = np.bincount(forced_users, weights=popularity[forced_items], minlength=n_users)
    for round_ in range(MAX_ROUNDS + 1):
        active = np.flatnonzero(deficit > 0)
        if not len(active):
            break
        expected = deficit[active] / np.maximum(1 - mass[active], 1e-9)  # draws to fill by rejection
        exact = (round_ == MAX_ROUNDS) | (expected > n_items / 4) | (mass[active] > 0.8)
        if exact.any():
            users = active[exact]
            new_keys, new_order = _gumbel_fill(rng, users, deficit[users], have, log_pop, n_items)
            keys.append(new_keys)
            orders.append(new_order + round_)
            have = np.sort(np.concatenate([have, new_keys]))
            deficit[users] = 0
            active, expected = active[~exact], expected[~exact]
            if not len(active):
                break
        draws = np.ceil(expected * 1.1).astype(np.int64) + 2
        cand_users = np.repeat(active, draws)
        cand_items = np.minimum(np.searchsorted(cdf, rng.random(len(cand_users)), side="right"), n_items - 1)
        cand = cand_users * n_items + cand_items
        fresh = np.flatnonzero(~_contains(have, cand))
        _, first = np.unique(cand[fresh], return_index=True)
        take = fresh[np.sort(first)]  # first draw of each new pair, in draw order (grouped by user)
        owner = cand_users[take]
        rank = np.arange(len(take)) - np.searchsorted(owner, owner)
        take, owner = take[rank < deficit[owner]], owner[rank < deficit[owner]]
        keys.append(cand[take])
        orders.append(round_ + take / len(cand))
        have = np.sort(np.concatenate([have, cand[take]]))
        deficit -= np.bincount(owner, minlength=n_users)
        mass += np.bincount(owner, weights=popularity[cand_items[take]], minlength=n_users)

    key = np.concatenate(keys)
    order = np.concatenate(orders)
    by_key = np.argsort(key)
    key, order = key[by_key], order[by_key]
    users, items = key // n_items, key % n_items
    if len(key) != counts.sum() or np.any(key[1:] == key[:-1]):  # invariants of the sampler
        raise RuntimeError("synth sampler produced a wrong or repeated pair")
    return users, items, _timestamps(rng, users, order, counts, spec)


def _contains(sorted_keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    if not len(sorted_keys):
        return np.zeros(len(values), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_keys, values), len(sorted_keys) - 1)
    return sorted_keys[pos] == values


def _gumbel_fill(
    rng: np.random.Generator,
    users: np.ndarray,
    need: np.ndarray,
    have: np.ndarray,
    log_pop: np.ndarray,
    n_items: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Exactly ``need`` more items per user, without replacement, proportional to popularity."""
    keys, orders = [], []
    rows = max(1, GUMBEL_CELLS // n_items)
    for at in range(0, len(users), rows):
        batch, want = users[at : at + rows], need[at : at + rows]
        score = log_pop.astype(np.float32) + rng.gumbel(size=(len(batch), n_items)).astype(np.float32)
        lo, hi = np.searchsorted(have, batch * n_items), np.searchsorted(have, (batch + 1) * n_items)
        taken = np.concatenate([have[a:b] for a, b in zip(lo, hi, strict=True)])
        score[np.repeat(np.arange(len(batch)), hi - lo), taken % n_items] = -np.inf
        top = int(want.max())
        best = np.argpartition(-score, top - 1, axis=1)[:, :top] if top < n_items else np.argsort(-score, 1)
        best = np.take_along_axis(best, np.argsort(-np.take_along_axis(score, best, 1), axis=1), 1)
        rank = np.arange(best.shape[1])
        keep = rank[None, :] < want[:, None]
        keys.append((batch[:, None] * n_items + best)[keep])
        orders.append(np.broadcast_to(rank / n_items, best.shape)[keep])
    return np.concatenate(keys), np.concatenate(orders)


def _timestamps(
    rng: np.random.Generator, users: np.ndarray, order: np.ndarray, counts: np.ndarray, spec: Shape
) -> np.ndarray:
    """Unix seconds: each user signs up at a random time and rates in sessions of a few seconds per
    film, with rare breaks of days to months between sessions, all inside the release's span."""
    n_users = len(counts)
    by_time = np.lexsort((order, users))  # rows of each user in the order they were rated
    timed_users = users[by_time]
    first_row = np.concatenate([[0], np.cumsum(counts)[:-1]])
    gap = rng.exponential(30.0, len(users))
    break_rate = np.minimum(rng.lognormal(np.log(0.004), 1.5, n_users), 0.2)
    breaks = rng.random(len(users)) < break_rate[timed_users]
    gap[breaks] += rng.lognormal(np.log(3 * 86_400), 1.5, int(breaks.sum()))
    gap[first_row] = 0.0
    offset = np.cumsum(gap)
    offset -= offset[first_row][timed_users]
    span = spec.end - spec.start
    sign_up = spec.start + rng.random(n_users) * span
    last = offset[np.cumsum(counts) - 1]
    squeeze = np.minimum(1.0, (spec.end - sign_up) / np.maximum(last, 1.0))  # stay inside the span
    stamps = np.empty(len(users), dtype=np.int64)
    stamps[by_time] = (sign_up[timed_users] + offset * squeeze[timed_users]).astype(np.int64)
    return stamps


def _expected(signal: np.ndarray, noise: float, low: float, step: float, levels: np.ndarray) -> np.ndarray:
    """E[rounded, clipped rating | signal]: low + step * P(signal + noise crosses each grid midpoint)."""
    if noise == 0:
        return low + step * np.clip(np.rint((signal - low) / step), 0, len(levels) - 1)
    expected = np.full(len(signal), low, dtype=np.float64)
    for boundary in levels[:-1] + step / 2:
        expected += step * ndtr((signal - np.float32(boundary)) / np.float32(noise))
    return expected


def _write_movies(path: Path, rng: np.random.Generator, item_raw: np.ndarray, spec: Shape) -> None:
    """movies.csv with ML-20M's columns: later ids are later films, genres drawn like MovieLens'."""
    n = len(item_raw)
    last_year = time.gmtime(spec.end).tm_year
    years = np.clip(np.rint(1915 + (last_year - 1915) * np.linspace(0, 1, n) ** 0.5 + rng.normal(0, 6, n)),
                    1902, last_year).astype(int)  # fmt: skip
    how_many = rng.choice([1, 2, 3, 4], n, p=[0.4, 0.35, 0.18, 0.07])
    scores = rng.gumbel(size=(n, len(GENRES))) + np.log(GENRE_WEIGHTS)
    picks = np.argsort(-scores, axis=1)
    genres = ["|".join(sorted(GENRES[g] for g in row[:k])) for row, k in zip(picks, how_many, strict=True)]
    titles = [f"Synthetic Film {i} ({y})" for i, y in zip(item_raw, years, strict=True)]
    table = pa.table({"movieId": pa.array(item_raw, pa.int32()), "title": titles, "genres": genres})
    with open(path, "wb") as handle:
        handle.write(b"movieId,title,genres\n")
        pacsv.write_csv(table, handle, pacsv.WriteOptions(include_header=False, quoting_style="none"))
