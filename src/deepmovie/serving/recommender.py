"""The Python API of a trained run: predict, recommend, similar items and cold start, without the data.

Factor models (mf, biased-mf, svdpp, pmf and the bias baselines) are read once into a
:class:`Factors` view, ``offset + b_u + b_i + x_u . q_i``: a user's scores for every item are one
matrix-vector product over precomputed item factors, and a new user is folded in by the same
closed-form ridge solve ALS does per user, with the model's own regularization. Other models score a
user through their ``predict`` over all items; their cold start is their family's own path
(:data:`COLD_START`) or an explicit error. Every method reads shared arrays only, so one
:class:`Recommender` serves concurrent requests.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import BaseModel

from deepmovie.config import build_config, load_config_file
from deepmovie.errors import DeepMovieError
from deepmovie.experiment import CONFIG, WEIGHTS
from deepmovie.models import MODELS, DataInfo, Model
from deepmovie.serving.artifacts import Artifacts, load_artifacts
from deepmovie.training.checkpoint import load_weights

RawId = int | str
MAX_COLD_RATINGS = 1000


class UnknownIdError(DeepMovieError):
    """A user or item the model cannot score (the API answers 404)."""


class Movie(BaseModel):
    item: RawId
    title: str | None
    year: int | None
    genres: list[str]


class Scored(Movie):
    rating: float  # predicted, clipped to the rating scale


class Rated(Movie):
    rating: float  # given by the user


class Similar(Movie):
    similarity: float


class History(BaseModel):
    user: RawId
    ratings: list[Rated]  # highest first


class Prediction(BaseModel):
    user: RawId
    item: Movie
    rating: float
    raw_score: float  # before clipping to the scale


class Recommendations(BaseModel):
    user: RawId | None  # None for a folded-in (cold-start) user
    cold_start: bool
    method: str  # how the scores were computed: "factors", "fold-in (ridge)", "model predict", ...
    excluded_seen: int  # rated items left out of the ranking
    items: list[Scored]


class SimilarItems(BaseModel):
    item: Movie
    method: str  # "item factors (cosine)" or "co-ratings (cosine)"
    items: list[Similar]


@dataclass(frozen=True)
class Factors:
    """A model as ``offset + b_u + b_i + x_u . q_i``, with the rule its user side was trained by."""

    offset: float
    user_vectors: np.ndarray  # (n_users, k)
    user_bias: np.ndarray  # (n_users,)
    item_factors: np.ndarray  # (n_items, k)
    item_bias: np.ndarray  # (n_items,)
    reg_vector: float
    reg_bias: float | None  # None: the model has no user bias
    reg_by_count: bool  # the penalty grows with the user's rating count (per-rating SGD, ALS-WR)
    implicit: np.ndarray | None = None  # SVD++'s y_j: a user's rated items add to their vector

    def scores(self, vector: np.ndarray, bias: float) -> np.ndarray:
        return self.offset + bias + self.item_bias + matvec(self.item_factors, vector)

    def fold_in(self, items: np.ndarray, ratings: np.ndarray) -> tuple[np.ndarray, float]:
        """(vector, bias) minimising the model's own regularized squared error on ``ratings`` with every
        item fixed: the closed-form ridge solve ALS makes for each user, no retraining."""
        n, k = len(items), self.item_factors.shape[1]
        q = torch.from_numpy(self.item_factors[items]).double()
        base = torch.zeros(k, dtype=torch.float64)
        if self.implicit is not None:
            base = torch.from_numpy(self.implicit[items]).double().sum(0) / n**0.5
        target = torch.from_numpy(ratings - self.offset - self.item_bias[items]).double() - q @ base
        design, penalty = q, [self.reg_vector] * k
        if self.reg_bias is not None:
            design, penalty = (
                torch.cat([q, torch.ones(n, 1, dtype=torch.float64)], 1),
                [*penalty, self.reg_bias],
            )
        if design.shape[1] == 0:
            return base.float().numpy(), 0.0
        scale = n if self.reg_by_count else 1
        gram = design.T @ design + torch.diag(torch.tensor(penalty, dtype=torch.float64) * scale)
        rhs = (design.T @ target)[:, None]
        factor, info = torch.linalg.cholesky_ex(gram)
        if int(info):  # singular: a regularization of 0 is allowed
            solution = torch.linalg.lstsq(gram, rhs).solution[:, 0]
        else:
            solution = torch.cholesky_solve(rhs, factor)[:, 0]
        bias = float(solution[k]) if self.reg_bias is not None else 0.0
        return (base + solution[:k]).float().numpy(), bias


FACTORS: dict[str, Callable[[Model], Factors]] = {}
COLD_START: dict[str, Callable[[Model, np.ndarray, np.ndarray], np.ndarray]] = {}


def _register(table: dict, *names: str) -> Callable:
    def decorator(function: Callable) -> Callable:
        for name in names:
            table[name] = function
        return function

    return decorator


def _array(tensor: torch.Tensor) -> np.ndarray:
    """A NumPy copy: products over arrays that alias torch's memory ran ten times slower here."""
    return tensor.detach().float().cpu().numpy().copy()


@_register(FACTORS, "mf")
def _mf(model: Model) -> Factors:
    n_users, n_items = model.info.n_users, model.info.n_items
    return Factors(
        0.0,
        _array(model.user_factors.weight),
        np.zeros(n_users, np.float32),
        _array(model.item_factors.weight),
        np.zeros(n_items, np.float32),
        model.params.reg_user,
        None,
        reg_by_count=True,  # per-rating SGD: each rating of the user adds reg_user |p_u|^2
    )


@_register(FACTORS, "biased-mf")
def _biased_mf(model: Model) -> Factors:
    return Factors(
        float(model.mean),
        _array(model.user_factors.weight),
        _array(model.user_bias.weight[:, 0]),
        _array(model.item_factors.weight),
        _array(model.item_bias.weight[:, 0]),
        model.params.reg_user,
        model.params.reg_bias,
        reg_by_count=True,
    )


@_register(FACTORS, "svdpp")
def _svdpp(model: Model) -> Factors:
    vectors, _, _ = model.user_vectors(torch.arange(model.info.n_users))
    return replace(_biased_mf(model), user_vectors=_array(vectors), implicit=_array(model.implicit.weight))


@_register(FACTORS, "pmf", "hybrid")  # the hybrid is PMF whose item factors had a text prior
def _pmf(model: Model) -> Factors:
    n_users, n_items = model.info.n_users, model.info.n_items
    return Factors(
        float(model.mean),
        _array(model.user_factors),
        np.zeros(n_users, np.float32),
        _array(model.item_factors),
        np.zeros(n_items, np.float32),
        model.params.reg_user,
        None,
        model.params.reg_by_count,
    )


@_register(FACTORS, "bias")
def _bias(model: Model) -> Factors:
    n_users, n_items = model.info.n_users, model.info.n_items
    return Factors(
        float(model.mean),
        np.zeros((n_users, 0), np.float32),
        _array(model.user_bias),
        np.zeros((n_items, 0), np.float32),
        _array(model.item_bias),
        0.0,
        model.params.reg_user,  # b_u = sum(r - mu - b_i) / (reg_user + n): the model's own ALS step
        reg_by_count=False,
    )


@_register(FACTORS, "global-mean")
def _global_mean(model: Model) -> Factors:
    n_users, n_items = model.info.n_users, model.info.n_items
    zeros = np.zeros(n_items, np.float32)
    empty = np.zeros((n_items, 0), np.float32)
    return Factors(
        float(model.mean), np.zeros((n_users, 0), np.float32), np.zeros(n_users), empty, zeros, 0, None, False
    )


@_register(COLD_START, "autorec")
def _autorec_cold(model: Model, items: np.ndarray, ratings: np.ndarray) -> np.ndarray:
    """U-AutoRec encodes a user's rating row: a new user's row is just another input."""
    if model.params.based != "user":
        raise DeepMovieError(
            "cold start is not supported for item-based AutoRec: it encodes items by the users who "
            "rated them, and a new user is an input column the network has no weights for "
            "(U-AutoRec, `--set based=user`, supports it)"
        )
    row = torch.zeros(1, model.info.n_items)
    row[0, torch.as_tensor(items)] = torch.as_tensor(ratings, dtype=torch.float32)
    return _array(model.reconstruct(row)[0])


class Recommender:
    """A trained run loaded for serving; build it with :meth:`load`."""

    def __init__(self, model: Model, artifacts: Artifacts, model_name: str) -> None:
        self.model = model.eval()
        self.artifacts = artifacts
        self.model_name = model_name
        with torch.no_grad():
            self.factors = FACTORS[model_name](model) if model_name in FACTORS else None
        if self.factors is None:
            # Their predict may read training rows (AutoRec): give it the rows the model has seen.
            model.prepare(artifacts.interactions(), 0)
        item_counts = np.bincount(artifacts.seen.indices, minlength=artifacts.n_items)
        # Items without training ratings are unknown, unless the model scores them from content.
        self.known_items = (item_counts > 0) | model.scores_cold_items
        self.known_users = np.diff(artifacts.seen.indptr) > 0
        items = artifacts.items
        self._lower_titles = [t.lower() for t in items.titles] if items is not None else None
        self._by_popularity = np.argsort(-item_counts, kind="stable")
        self._movies = [self._movie_fields(i) for i in range(artifacts.n_items)]
        self._unit_items = self._item_vectors()

    @classmethod
    def load(cls, run_dir: Path | str) -> Recommender:
        """Load a run directory (or one fold of a k-fold run) on the CPU, without the training data."""
        artifacts = load_artifacts(Path(run_dir))
        config = build_config(load_config_file(artifacts.root / CONFIG))
        saved = load_weights(artifacts.fold_dir / WEIGHTS)
        if not isinstance(saved, dict) or saved.get("format") != 1 or saved.get("model") != config.model:
            raise DeepMovieError(
                f"{artifacts.fold_dir / WEIGHTS}: not weights of a {config.model!r} model in format 1"
            )
        info = DataInfo(
            artifacts.n_users,
            artifacts.n_items,
            artifacts.scale,
            artifacts.train_mean,
            artifacts.items,
            artifacts.users,
        )
        model = MODELS.get(config.model)(config.model_params(), info)
        state = saved["state"]
        for name, buffer in list(model.named_buffers()):
            if name in state and state[name].shape != buffer.shape:  # sized by the data (SVD++'s index)
                owner, _, leaf = name.rpartition(".")
                setattr(model.get_submodule(owner), leaf, torch.empty_like(state[name]))
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:  # weights of another configuration: name the first mismatch
            first = str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
            raise DeepMovieError(f"{artifacts.fold_dir / WEIGHTS}: does not fit {CONFIG} ({first})") from None
        return cls(model, artifacts, config.model)

    # --- lookups -------------------------------------------------------------------------------

    def user_index(self, user: RawId) -> int:
        """Index of a user the model was trained on, or :class:`UnknownIdError` saying why not."""
        index = _lookup(self.artifacts.user_ids, user, "user")
        if not self.known_users[index]:
            raise UnknownIdError(
                f"user {user}: no training ratings in this run (only held-out ones); "
                "pass their ratings for a cold start instead"
            )
        return index

    def item_index(self, item: RawId) -> int:
        index = _lookup(self.artifacts.item_ids, item, "item")
        if not self.known_items[index]:
            raise UnknownIdError(
                f"item {item}: no training ratings in this run, so the model knows nothing of it"
            )
        return index

    def movie(self, index: int) -> Movie:
        return Movie.model_construct(**self._fields(index))

    def _fields(self, index: int) -> dict[str, object]:
        """A result's copy of an item's fields (its genre list is not shared with the cache)."""
        fields = self._movies[index]
        return {**fields, "genres": list(fields["genres"])}

    def _movie_fields(self, index: int) -> dict[str, object]:
        """An item's id and metadata, built once per item at load: results only copy them."""
        raw = self.artifacts.item_ids.raw[index].item()
        items = self.artifacts.items
        if items is None:
            return {"item": raw, "title": None, "year": None, "genres": []}
        genres = [items.genre_names[g] for g in np.flatnonzero(items.genres[index])]
        year = int(items.years[index])
        return {"item": raw, "title": items.titles[index] or None, "year": year or None, "genres": genres}

    # --- the API -------------------------------------------------------------------------------

    def predict(self, user: RawId, item: RawId) -> Prediction:
        """The predicted rating of ``item`` by a known ``user``."""
        u, i = self.user_index(user), self.item_index(item)
        if self.factors is not None:
            f = self.factors
            score = float(f.offset + f.user_bias[u] + f.item_bias[i] + f.user_vectors[u] @ f.item_factors[i])
        else:
            with torch.inference_mode():
                score = float(self.model.predict(torch.tensor([u]), torch.tensor([i]))[0])
        return Prediction(
            user=_raw(self.artifacts.user_ids, u),
            item=self.movie(i),
            rating=self._clip(score),
            raw_score=score,
        )

    def recommend(
        self,
        user: RawId | None = None,
        *,
        ratings: dict[RawId, float] | None = None,
        k: int = 10,
        genre: str | None = None,
        min_year: int | None = None,
        include_seen: bool = False,
    ) -> Recommendations:
        """Top ``k`` items for a known ``user``, or for a new user given as ``ratings`` (cold start)."""
        if (user is None) == (ratings is None):
            raise DeepMovieError("recommend needs exactly one of a user id (--user) or ratings (--ratings)")
        if k < 1:
            raise DeepMovieError(f"k: {k} is not a positive number of items")
        allowed = self.known_items & self._filters(genre, min_year)
        if ratings is not None:
            items, values = self._parse_cold(ratings)
            scores, method = self._cold_scores(items, values)
            rated, raw_user = items, None
        else:
            u = self.user_index(user)
            scores, method = self._user_scores(u), "factors" if self.factors is not None else "model predict"
            seen = self.artifacts.seen
            rated, raw_user = (
                seen.indices[seen.indptr[u] : seen.indptr[u + 1]],
                _raw(self.artifacts.user_ids, u),
            )
        excluded = 0
        if not include_seen:
            excluded = int(allowed[rated].sum())
            allowed = allowed.copy()
            allowed[rated] = False
        top = top_k(scores, allowed, k)
        return Recommendations(
            user=raw_user,
            cold_start=ratings is not None,
            method=method,
            excluded_seen=excluded,
            items=[Scored.model_construct(**self._fields(i), rating=self._clip(scores[i])) for i in top],
        )

    def similar(self, item: RawId, k: int = 10) -> SimilarItems:
        """Items closest to ``item``: cosine of item factors, or of rating columns for other models."""
        if k < 1:
            raise DeepMovieError(f"k: {k} is not a positive number of items")
        i = self.item_index(item)
        unit, method = self._unit_items
        similarity = (unit @ unit[i].T).toarray().ravel() if sp.issparse(unit) else matvec(unit, unit[i])
        allowed = self.known_items.copy()
        allowed[i] = False
        top = top_k(similarity, allowed, k)
        return SimilarItems(
            item=self.movie(i),
            method=method,
            items=[
                Similar.model_construct(**self._fields(j), similarity=round(float(similarity[j]), 6))
                for j in top
            ],
        )

    def history(self, user: RawId) -> History:
        """The ratings the model saw from ``user``, highest first."""
        u = self.user_index(user)
        seen = self.artifacts.seen
        span = slice(seen.indptr[u], seen.indptr[u + 1])
        items, values = seen.indices[span], seen.data[span]
        order = np.lexsort((items, -values))
        rated = [Rated.model_construct(**self._fields(items[j]), rating=float(values[j])) for j in order]
        return History(user=_raw(self.artifacts.user_ids, u), ratings=rated)

    def search(self, query: str, limit: int = 20) -> list[Movie]:
        """Known items whose title holds ``query`` (any case), most rated first."""
        needle = query.strip().lower()
        if not needle:
            raise DeepMovieError("q: empty search text")
        if self._lower_titles is None:
            raise DeepMovieError("this run's dataset has no item titles to search")
        hits = (i for i in self._by_popularity if self.known_items[i] and needle in self._lower_titles[i])
        return [self.movie(int(i)) for i in itertools.islice(hits, limit)]

    def describe(self) -> dict[str, object]:
        return {
            "model": self.model_name,
            "users": int(self.known_users.sum()),
            "items": int(self.known_items.sum()),
            "scale": self.artifacts.scale.to_dict(),
            "genres": self.artifacts.items.genre_names if self.artifacts.items is not None else [],
            "scoring": "factors" if self.factors is not None else "model predict",
            "cold_start": self.factors is not None or self.model_name in COLD_START,
        }

    # --- internals ----------------------------------------------------------------------------

    def _clip(self, score: float) -> float:
        """A score in its task's range: a rating on the scale, a "like" probability in [0, 1]."""
        task = self.model.task
        if task == "implicit":
            return round(float(score), 4)
        low, high = (0.0, 1.0) if task == "like" else (self.artifacts.scale.low, self.artifacts.scale.high)
        return round(float(min(max(score, low), high)), 4)

    def _user_scores(self, u: int) -> np.ndarray:
        if self.factors is not None:
            return self.factors.scores(self.factors.user_vectors[u], self.factors.user_bias[u])
        with torch.inference_mode():
            return _array(self.model.score_items(torch.tensor([u]))[0])

    def _cold_scores(self, items: np.ndarray, ratings: np.ndarray) -> tuple[np.ndarray, str]:
        if self.factors is not None:
            vector, bias = self.factors.fold_in(items, ratings)
            return self.factors.scores(vector, bias), "fold-in (closed-form ridge)"
        fold = COLD_START.get(self.model_name)
        if fold is None:
            raise DeepMovieError(
                f"cold start is not supported for model {self.model_name!r}: it has no user-independent "
                "way to place a new user (factor models and U-AutoRec have one); recommend for a known user"
            )
        with torch.inference_mode():
            return fold(self.model, items, ratings), f"{self.model_name} fold-in"

    def _parse_cold(self, ratings: dict[RawId, float]) -> tuple[np.ndarray, np.ndarray]:
        """Item indices and values of a new user's ratings, each checked against the model and scale."""
        if not ratings:
            raise DeepMovieError("ratings: give at least one item:rating pair for a cold start")
        if len(ratings) > MAX_COLD_RATINGS:
            raise DeepMovieError(f"ratings: {len(ratings)} pairs; at most {MAX_COLD_RATINGS}")
        scale = self.artifacts.scale
        items, values = [], []
        for item, rating in ratings.items():
            if not (np.isfinite(rating) and scale.low <= rating <= scale.high):
                raise DeepMovieError(
                    f"ratings: item {item} rated {rating}, outside {scale.low:g}..{scale.high:g}"
                )
            items.append(self.item_index(item))
            values.append(float(rating))
        if len(set(items)) != len(items):
            raise DeepMovieError("ratings: an item is rated twice")
        return np.asarray(items, dtype=np.int64), np.asarray(values, dtype=np.float64)

    def _filters(self, genre: str | None, min_year: int | None) -> np.ndarray:
        keep = np.ones(self.artifacts.n_items, dtype=bool)
        items = self.artifacts.items
        if (genre is not None or min_year is not None) and items is None:
            raise DeepMovieError("this run's dataset has no item metadata: --genre and --min-year need it")
        if genre is not None:
            names = [g.lower() for g in items.genre_names]
            if genre.lower() not in names:
                raise DeepMovieError(f"genre {genre!r}: unknown (known: {', '.join(items.genre_names)})")
            keep &= items.genres[:, names.index(genre.lower())].astype(bool)
        if min_year is not None:
            keep &= items.years >= min_year
        return keep

    def _item_vectors(self) -> tuple[np.ndarray | sp.csr_matrix, str]:
        """Unit-length item representations for :meth:`similar`: factors, else centred rating columns."""
        if self.factors is not None and self.factors.item_factors.shape[1] > 0:
            q = self.factors.item_factors
            return q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12), "item factors (cosine)"
        seen = self.artifacts.seen.astype(np.float64)
        counts = np.maximum(np.diff(seen.indptr), 1)
        user_means = np.asarray(seen.sum(1)).ravel() / counts
        centred = seen.copy()
        centred.data -= np.repeat(user_means, np.diff(seen.indptr))
        columns = sp.csr_matrix(centred.T)
        norms = np.sqrt(np.asarray(columns.multiply(columns).sum(1)).ravel())
        return sp.diags(1 / np.maximum(norms, 1e-12)) @ columns, "co-ratings (cosine)"


def matvec(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """``matrix @ vector`` through torch: NumPy's multithreaded OpenBLAS gemv was 10-50x slower on a
    loaded machine (threads spinning on busy cores), torch's stays steady."""
    return torch.mv(
        torch.from_numpy(matrix), torch.from_numpy(np.ascontiguousarray(vector, matrix.dtype))
    ).numpy()


def top_k(scores: np.ndarray, allowed: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best allowed scores, best first: argpartition, then a sort of ``k``."""
    candidates = np.flatnonzero(allowed)
    k = min(k, len(candidates))
    if k == 0:
        return candidates
    values = scores[candidates]
    part = np.argpartition(-values, k - 1)[:k]
    return candidates[part[np.argsort(-values[part], kind="stable")]]


def parse_ratings(text: str) -> dict[RawId, float]:
    """``"1:5,50:4,260:5"`` -> ``{"1": 5.0, "50": 4.0, "260": 5.0}`` (the CLI's ``--ratings``)."""
    ratings: dict[RawId, float] = {}
    for part in text.split(","):
        item, sep, value = part.strip().rpartition(":")
        try:
            rating = float(value)
        except ValueError:
            rating = None
        if not sep or not item.strip() or rating is None:
            raise DeepMovieError(f"--ratings {part.strip()!r}: expected item:rating, e.g. 1:5,50:4")
        if item.strip() in ratings:
            raise DeepMovieError(f"--ratings: item {item.strip()} is rated twice")
        ratings[item.strip()] = rating
    return ratings


def _lookup(ids, raw: RawId, kind: str) -> int:
    """Index of a raw id given as text or a number; :class:`UnknownIdError` when the model lacks it."""
    value: RawId = raw
    if ids.raw.dtype.kind in "iu":
        try:
            value = int(str(raw).strip())
        except ValueError:
            raise UnknownIdError(
                f"{kind} {raw!r}: not an id of this model ({kind} ids are integers)"
            ) from None
        if not -(2**63) <= value < 2**63:
            raise UnknownIdError(f"{kind} {raw}: not an id of this model")
    index = int(ids.index_of(np.array([value]))[0])
    if index < 0:
        raise UnknownIdError(f"{kind} {raw}: not an id of this model ({len(ids):,} {kind}s)")
    return index


def _raw(ids, index: int) -> RawId:
    return ids.raw[index].item()
