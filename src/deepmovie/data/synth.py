"""Synthetic ratings in the shape of a MovieLens release, with a known structure and noise floor.

Real MovieLens files cannot always be redistributed, and a model's error on them has no known floor. A
synthetic folder fixes both: benchmarks can run at full ML-20M size anywhere, and ``truth.json`` says how
low an RMSE can go. The model is the one biased matrix factorization assumes::

    rating = round_to_grid(mu + b_user + b_item + u . v + noise * N(0, 1))   clipped to the scale

Who rates what follows the MovieLens marginals: heavy-tailed user activity (lognormal, every user at
least 20 ratings), long-tailed item popularity (lognormal weights; drawing without replacement caps the
head, as in MovieLens where the top film is rated by about half the users), no (user, item) pair twice.
Everything is vectorized NumPy, generated in chunks of users and written as it goes: ML-20M size takes
well under 1 GB of memory and about 20 s on 2 cores.
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
GENRE_WEIGHTS = np.array(
    [13, 8.4, 4.2, 4.1, 3.5, 2.9, 2.6, 2.5, 2.3, 1.7, 1.5, 1.4, 1.2, 1.1, 1, 1, 0.7, 0.3]
)


@dataclass(frozen=True)
class Shape:
    """Sizes, id range, time span and popularity curve of one MovieLens release."""

    users: int
    items: int
    ratings: int
    max_item_id: int  # MovieLens movie ids have gaps: they run up to this
    start: int  # first and last timestamp of the release
    end: int
    popularity_sigma: float  # item weights are lognormal with this sigma


# popularity_sigma fits the real item counts where we have them: ML-1M's top 10% of films hold 44% of
# the ratings (synthetic: 46%) and the median film has 0.46 of the mean count (0.47); ML-20M's median
# film has about 18 ratings (synthetic: about 24); ML-10M is in between.
SHAPES = {
    "ml-100k": Shape(943, 1_682, 100_000, 1_682, 874_724_710, 893_286_638, 1.6),
    "ml-1m": Shape(6_040, 3_706, 1_000_209, 3_952, 956_703_932, 1_046_454_590, 1.5),
    "ml-10m": Shape(69_878, 10_677, 10_000_054, 65_133, 789_652_009, 1_231_131_736, 2.5),
    "ml-20m": Shape(138_493, 26_744, 20_000_263, 131_262, 789_652_009, 1_427_784_002, 3.0),
}
SCALES = {"whole": (1.0, 5.0, 1.0), "half": (0.5, 5.0, 0.5)}
MEANS = {"whole": 3.58, "half": 3.53}  # mu: ML-1M's and ML-20M's mean rating


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
    return Shape(users, items, ratings, max_id, spec.start, spec.end, spec.popularity_sigma)


def _generate(spec: Shape, out: Path, *, seed: int, noise: float, scale: str, quiet: bool) -> dict:
    sequence = np.random.SeedSequence(seed)
    rng = np.random.default_rng(sequence.spawn(1)[0])
    counts = _user_counts(rng, spec)
    catalogue = _Catalogue.build(rng, spec)
    model = _Model.build(rng, spec, _rating_share(catalogue.popularity, counts), noise, scale)
    item_raw = np.sort(rng.choice(spec.max_item_id, spec.items, replace=False)) + 1
    # Every item gets one rating, in a random user's slot, so that all items appear in the file.
    slots = rng.choice(spec.ratings, spec.items, replace=False)
    seed_users = np.searchsorted(np.cumsum(counts), slots, side="right")
    seed_items = rng.permutation(spec.items)
    by_user = np.argsort(seed_users, kind="stable")
    seed_users, seed_items = seed_users[by_user], seed_items[by_user]
    bounds = _chunks(counts)
    chunk_seeds = sequence.spawn(1 + len(bounds))[1:]
    _write_movies(out / "movies.csv", rng, item_raw, spec)

    totals = dict.fromkeys(("rows", "sse", "sse_bayes", "sum", "sum_sq"), 0.0)
    level_text = pa.array([f"{v:.1f}" for v in model.levels])
    schema = pa.schema(
        [("userId", pa.int32()), ("movieId", pa.int32()),
         ("rating", pa.dictionary(pa.int8(), pa.string())), ("timestamp", pa.int64())]
    )  # fmt: skip
    path, tmp = out / "ratings.csv", out / f"ratings.csv.tmp{os.getpid()}"
    bar = tqdm(total=spec.ratings, unit="rows", unit_scale=True, desc="synth", disable=quiet or None)
    pending: Future | None = None
    try:
        # The CSV of one chunk is written on a second thread while the next chunk is generated.
        with pa.OSFile(str(tmp), "wb") as handle, ThreadPoolExecutor(1) as background, bar:
            handle.write(b"userId,movieId,rating,timestamp\n")  # PyArrow would quote the names
            writer = pacsv.CSVWriter(
                handle, schema, write_options=pacsv.WriteOptions(include_header=False, quoting_style="none")
            )
            for chunk_seed, (first, last) in zip(chunk_seeds, bounds, strict=True):
                chunk_rng = np.random.default_rng(chunk_seed)
                lo, hi = np.searchsorted(seed_users, [first, last])
                users, items, order = _chunk_pairs(
                    chunk_rng, counts[first:last], seed_users[lo:hi] - first, seed_items[lo:hi], catalogue
                )
                stamps = _timestamps(chunk_rng, users, order, counts[first:last], spec)
                grid, rating, signal = model.rate(chunk_rng, users, items)
                totals["sse"] += float(np.square(rating - signal).sum())
                totals["sse_bayes"] += float(np.square(rating - model.expected(signal)).sum())
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
                pending = background.submit(writer.write_table, table)
                bar.update(len(rating))
            if pending is not None:
                pending.result()
            writer.close()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    n = int(totals["rows"])
    if n != spec.ratings:  # the sampler guarantees this: a mismatch is a bug
        raise RuntimeError(f"generated {n} ratings, expected {spec.ratings}")
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
        "global_mean": model.mu,
        "rating_mean": mean,
        "rating_std": math.sqrt(max(totals["sum_sq"] / n - mean**2, 0.0)),
        "user_bias_std": USER_BIAS_STD,
        "item_bias_std": ITEM_BIAS_STD,
        "interaction_std": INTERACTION_STD,
        "popularity_sigma": spec.popularity_sigma,
    }


@dataclass
class _Catalogue:
    """Item popularity, and Walker alias tables to draw items from it in O(1) each."""

    popularity: np.ndarray
    log_popularity: np.ndarray
    keep: np.ndarray  # alias method: keep item j with this probability, else take alias[j]
    alias: np.ndarray

    @classmethod
    def build(cls, rng: np.random.Generator, spec: Shape) -> _Catalogue:
        weights = rng.lognormal(0.0, spec.popularity_sigma, spec.items)
        popularity = weights / weights.sum()
        n = len(popularity)
        scaled = popularity * n
        keep, alias = np.ones(n), np.arange(n)
        small = list(np.flatnonzero(scaled < 1))
        large = list(np.flatnonzero(scaled >= 1))
        while small and large:  # Vose's construction: one pass over the items, once per run
            low, high = small.pop(), large[-1]
            keep[low], alias[low] = scaled[low], high
            scaled[high] -= 1 - scaled[low]
            if scaled[high] < 1:
                small.append(large.pop())
        return cls(popularity, np.log(popularity).astype(np.float32), keep, alias)

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        column = rng.integers(0, len(self.keep), size)
        return np.where(rng.random(size) < self.keep[column], column, self.alias[column])


@dataclass
class _Model:
    """The latent model of the ratings: mu + biases + rank-k interaction, noise, the star grid."""

    mu: float
    noise: float
    levels: np.ndarray
    item_bias: np.ndarray
    item_factors: np.ndarray

    @classmethod
    def build(
        cls, rng: np.random.Generator, spec: Shape, share: np.ndarray, noise: float, scale: str
    ) -> _Model:
        """``share``: each item's expected share of the ratings."""
        low, high, step = SCALES[scale]
        log_pop = np.log(share)
        z_pop = (log_pop - log_pop.mean()) / max(float(log_pop.std()), 1e-12)
        item_bias = ITEM_BIAS_STD * (
            POPULARITY_BIAS * z_pop + math.sqrt(1 - POPULARITY_BIAS**2) * rng.standard_normal(spec.items)
        )
        item_bias -= share @ item_bias  # centred where the ratings fall, so mu stays their mean
        item_factors = rng.normal(0, _factor_std(), (spec.items, RANK)).astype(np.float32)
        levels = np.round(np.arange(low, high + step / 2, step), 1)
        return cls(MEANS[scale], noise, levels, item_bias.astype(np.float32), item_factors)

    def rate(
        self, rng: np.random.Generator, users: np.ndarray, items: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(grid level, rating, noiseless signal) of each pair; user parameters are drawn here, one
        chunk of users at a time."""
        n_users = int(users[-1]) + 1 if len(users) else 0
        user_bias = rng.normal(0, USER_BIAS_STD, n_users).astype(np.float32)
        user_factors = rng.normal(0, _factor_std(), (n_users, RANK)).astype(np.float32)
        signal = np.einsum("ij,ij->i", user_factors[users], self.item_factors[items])
        signal += user_bias[users]
        signal += self.item_bias[items]
        signal += np.float32(self.mu)
        observed = signal + np.float32(self.noise) * rng.standard_normal(len(signal), np.float32)
        low, step = self.levels[0], self.levels[1] - self.levels[0]
        grid = np.clip(np.rint((observed - low) / step), 0, len(self.levels) - 1).astype(np.int8)
        return grid, self.levels[grid], signal

    def expected(self, signal: np.ndarray) -> np.ndarray:
        """E[rating | signal]: low + step * P(signal + noise passes each midpoint between levels)."""
        low, step = self.levels[0], self.levels[1] - self.levels[0]
        if self.noise == 0:
            return self.levels[np.clip(np.rint((signal - low) / step), 0, len(self.levels) - 1).astype(int)]
        expected = np.full(len(signal), low)
        for midpoint in self.levels[:-1] + step / 2:
            expected += step * ndtr((signal - np.float32(midpoint)) / np.float32(self.noise))
        return expected


def _rating_share(popularity: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Each item's expected share of the ratings. Not ``popularity`` itself: drawing without replacement
    saturates the head (an item is rated at most once per user), the more so for heavy users. A user
    with c ratings holds item i with probability about 1 - exp(-lam * p_i), lam set so that these sum
    to c (the Poisson approximation); users are grouped by log-spaced count to keep this cheap."""
    edges = np.geomspace(counts.min(), counts.max() + 1, 49)
    group = np.searchsorted(edges, counts, side="right")
    size = np.bincount(group)
    used = np.flatnonzero(size)
    mean_count = np.bincount(group, weights=counts)[used] / size[used]
    low, high = np.zeros(len(used)), np.full(len(used), 1.0)
    while np.any(-np.expm1(-high[:, None] * popularity).sum(1) < mean_count):
        high *= 2
    for _ in range(60):  # bisection on lam, all groups at once
        mid = (low + high) / 2
        short = -np.expm1(-mid[:, None] * popularity).sum(1) < mean_count
        low, high = np.where(short, mid, low), np.where(short, high, mid)
    share = size[used] @ -np.expm1(-high[:, None] * popularity)
    return share / share.sum()


def _factor_std() -> float:
    return (INTERACTION_STD**2 / RANK) ** 0.25  # so that u . v has std INTERACTION_STD


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
    forced_users: np.ndarray,
    forced_items: np.ndarray,
    catalogue: _Catalogue,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user, item, draw order) of one chunk's ratings, sorted by user then item like MovieLens files.

    Users are local to the chunk (0..len(counts)-1). Each one's items are the forced ones plus draws
    proportional to popularity without replacement: draw with replacement and reject repeats (cheap
    while a user has seen little of the catalogue), and let the exact Gumbel top-k sampler finish the
    users who would need many rejections. Both continue the same sequential sampling, so the mix is
    exact. The draw order becomes the time order: popular films get rated first, as on MovieLens'
    sign-up page.
    """
    n_items = len(catalogue.popularity)
    n_users = len(counts)
    have = np.sort(forced_users.astype(np.int64) * n_items + forced_items)  # pairs so far, sorted
    parts = [(have, rng.integers(0, (MAX_ROUNDS + 1) << ROUND_SHIFT, len(have)))]  # forced: any time
    deficit = counts - np.bincount(forced_users, minlength=n_users)
    mass = np.bincount(forced_users, weights=catalogue.popularity[forced_items], minlength=n_users)
    for round_ in range(MAX_ROUNDS + 1):
        active = np.flatnonzero(deficit > 0)
        if not len(active):
            break
        expected = deficit[active] / np.maximum(1 - mass[active], 1e-9)  # draws to fill by rejection
        exact = (round_ == MAX_ROUNDS) | (expected > n_items / 4) | (mass[active] > 0.8)
        if exact.any():
            users = active[exact]
            keys, rank = _gumbel_fill(rng, users, deficit[users], have, catalogue.log_popularity)
            parts.append((keys, (round_ << ROUND_SHIFT) + rank))
            have = np.sort(np.concatenate([have, np.sort(keys)]), kind="stable")  # merges two runs
            deficit[users] = 0
            active, expected = active[~exact], expected[~exact]
            if not len(active):
                break
        cand_users = np.repeat(active, np.ceil(expected * 1.1).astype(np.int64) + 2)
        cand_items = catalogue.draw(rng, len(cand_users))
        cand = cand_users * n_items + cand_items
        size = len(cand)
        if n_users * n_items * size < 2**62:  # one integer sort of (pair, draw index)
            packed = np.sort(cand * size + np.arange(size))
            key, index = packed // size, packed % size
        else:
            index = np.argsort(cand, kind="stable")
            key = cand[index]
        new = np.r_[True, key[1:] != key[:-1]] & ~_contains(have, key)  # first draw of a new pair
        key, index = key[new], index[new]
        in_draw_order = np.sort(index)  # grouped by user, as the candidates are
        owner = cand_users[in_draw_order]
        rank = np.arange(len(owner)) - np.searchsorted(owner, owner)
        chosen = np.zeros(size, dtype=bool)
        chosen[in_draw_order[rank < deficit[owner]]] = True
        keep = chosen[index]
        key, index = key[keep], index[keep]
        parts.append((key, (round_ << ROUND_SHIFT) + index))
        have = np.sort(np.concatenate([have, key]), kind="stable")
        owner = cand_users[index]
        deficit -= np.bincount(owner, minlength=n_users)
        mass += np.bincount(owner, weights=catalogue.popularity[cand_items[index]], minlength=n_users)

    if len(have) != counts.sum() or np.any(have[1:] == have[:-1]):  # invariants of the sampler
        raise RuntimeError("synth sampler produced a wrong or repeated pair")
    order = np.empty(len(have), dtype=np.int64)
    for keys, part_order in parts:
        order[np.searchsorted(have, keys)] = part_order
    return have // n_items, have % n_items, order


ROUND_SHIFT = 40  # draw order = round << ROUND_SHIFT | position of the draw within its round


def _contains(sorted_keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    if not len(sorted_keys):
        return np.zeros(len(values), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_keys, values), len(sorted_keys) - 1)
    return sorted_keys[pos] == values


def _gumbel_fill(
    rng: np.random.Generator, users: np.ndarray, need: np.ndarray, have: np.ndarray, log_pop: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(pair key, draw rank) of ``need`` more items per user: without replacement, proportional to
    popularity, avoiding the pairs in ``have`` (exact: the top scores of log weight + Gumbel noise)."""
    n_items = len(log_pop)
    keys, ranks = [], []
    rows = max(1, GUMBEL_CELLS // n_items)
    for at in range(0, len(users), rows):
        batch, want = users[at : at + rows], need[at : at + rows]
        score = log_pop + rng.gumbel(size=(len(batch), n_items)).astype(np.float32)
        lo, hi = np.searchsorted(have, batch * n_items), np.searchsorted(have, (batch + 1) * n_items)
        taken = np.concatenate([have[a:b] for a, b in zip(lo, hi, strict=True)])
        score[np.repeat(np.arange(len(batch)), hi - lo), taken % n_items] = -np.inf
        top = int(want.max())
        best = np.argpartition(-score, top - 1, axis=1)[:, :top] if top < n_items else np.argsort(-score, 1)
        best = np.take_along_axis(best, np.argsort(-np.take_along_axis(score, best, 1), axis=1), 1)
        rank = np.broadcast_to(np.arange(best.shape[1]), best.shape)
        keep = rank < want[:, None]
        keys.append((batch[:, None] * n_items + best)[keep])
        ranks.append(rank[keep])
    return np.concatenate(keys), np.concatenate(ranks)


def _timestamps(
    rng: np.random.Generator, users: np.ndarray, order: np.ndarray, counts: np.ndarray, spec: Shape
) -> np.ndarray:
    """Unix seconds: each user signs up at a random time and rates in sessions of a few seconds per
    film, with rare breaks of days to months between sessions, all inside the release's span."""
    n_users = len(counts)
    by_time = np.lexsort((order, users))  # each user's rows in the order they were drawn
    timed_users = users[by_time]
    ends = np.cumsum(counts)
    first_row = ends - counts
    gap = rng.exponential(30.0, len(users))
    break_rate = np.minimum(rng.lognormal(np.log(0.004), 1.5, n_users), 0.2)
    breaks = rng.random(len(users)) < break_rate[timed_users]
    gap[breaks] += rng.lognormal(np.log(3 * 86_400), 1.5, int(breaks.sum()))
    gap[first_row] = 0.0
    offset = np.cumsum(gap)
    offset -= offset[first_row][timed_users]
    sign_up = spec.start + rng.random(n_users) * (spec.end - spec.start)
    squeeze = np.minimum(1.0, (spec.end - sign_up) / np.maximum(offset[ends - 1], 1.0))  # inside the span
    stamps = np.empty(len(users), dtype=np.int64)
    stamps[by_time] = (sign_up[timed_users] + offset * squeeze[timed_users]).astype(np.int64)
    return stamps


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
