"""A trained model with everything it needs to answer in raw ids: predict, recommend, similar, fold-in.

:func:`deepmovie.fit` returns one trained in memory; :meth:`Recommender.load` reads one from a run
directory and :meth:`Recommender.save` writes one, so ``save`` then ``load`` predicts identically.
What a model is (its factor view, its fold-in, the rows it reads) it says itself through the model
contract; this class never looks inside a model. Factor models score a user with one product over
precomputed item factors; other models through their ``score_items``. Every method reads shared
arrays only, so one :class:`Recommender` serves concurrent requests.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import ValidationError

from deepmovie.config import RunConfig, dump_yaml
from deepmovie.errors import DeepMovieError
from deepmovie.files import write_text
from deepmovie.models import MODELS, DataInfo, Model
from deepmovie.models.base import FoldInUnsupported
from deepmovie.models.factors import to_numpy
from deepmovie.models.layers import eval_mode
from deepmovie.recommender.artifacts import Artifacts, load_artifacts, locate, read_config
from deepmovie.recommender.schemas import (
    Filters,
    History,
    Movie,
    Prediction,
    Rated,
    RawId,
    Reason,
    Recommendations,
    Scored,
    Similar,
    SimilarItems,
)
from deepmovie.rundir import CONFIG, SUMMARY, WEIGHTS, claim_run, read_summary
from deepmovie.training.checkpoint import load_weights, save_atomic

MAX_COLD_RATINGS = 1000
EXPLAIN = 3  # rated items named per recommendation
SHRINK = 10.0  # popularity shrinkage of similarities: n / (n + SHRINK) for an item of n ratings
PREDICT_BATCH = 1 << 18
WEIGHTS_FORMAT = 1
INTEGER = re.compile(r"[+-]?[0-9]+")  # how an integer id is written: ASCII digits, an optional sign


class UnknownIdError(DeepMovieError):
    """A user or item the model cannot score (the API answers 404)."""


class Recommender:
    """A trained model, its id maps, item metadata and the ratings it saw; ``summary`` holds its test
    figures when it was trained here (or the run's ``summary.json`` when loaded)."""

    def __init__(
        self,
        model: Model,
        config: RunConfig,
        artifacts: Artifacts,
        summary: dict[str, Any] | None = None,
        rater: Recommender | None = None,
    ) -> None:
        self.model = model.eval()
        self.config = config
        self.artifacts = artifacts
        self.summary = summary
        model.attach(artifacts.interactions())
        with torch.no_grad():
            self.factors = model.factors()
        item_counts = np.bincount(artifacts.seen.indices, minlength=artifacts.n_items)
        # Items without training ratings are unknown, unless the model scores them from content.
        self.known_items = (item_counts > 0) | model.scores_cold_items
        self.known_users = np.diff(artifacts.seen.indptr) > 0
        items = artifacts.items
        self._lower_titles = [t.lower() for t in items.titles] if items is not None else None
        self._by_popularity = np.argsort(-item_counts, kind="stable")
        self._item_counts = item_counts
        self._shrink = item_counts / (item_counts + SHRINK)
        self._movies = [self._movie_fields(i) for i in range(artifacts.n_items)]
        # Whose predicted stars a list shows: a rating model's own, or a paired rater's.
        self.rater = self if model.task == "rating" else None
        if rater is not None:
            self.pair(rater)

    def pair(self, rater: Recommender) -> Recommender:
        """Show ``rater``'s predicted stars beside this model's ranking (both trained on the same data)."""
        if rater.model.task != "rating":
            raise DeepMovieError(
                f"rater: a {rater.model_name!r} model predicts no ratings (task {rater.model.task})"
            )
        for kind in ("user_ids", "item_ids"):
            mine, theirs = getattr(self.artifacts, kind).raw, getattr(rater.artifacts, kind).raw
            if mine.shape != theirs.shape or not np.array_equal(mine, theirs):
                raise DeepMovieError(
                    f"rater: {rater.model_name!r} was trained on other data than {self.model_name!r} "
                    f"({kind.removesuffix('_ids')} ids differ); train both on the same data"
                )
        self.rater = rater
        return self

    @property
    def model_name(self) -> str:
        return self.config.model

    # --- files --------------------------------------------------------------------------------

    @classmethod
    def load(cls, run_dir: Path | str, *, max_memory: int | None = None) -> Recommender:
        """Load a run directory (or one fold of a k-fold run) on the CPU, without the training data; a
        model whose weights would take more than ``max_memory`` bytes (default: 80% of the free memory)
        is refused before it is built."""
        root, fold_dir = locate(Path(run_dir))
        config = read_config(root)
        artifacts = load_artifacts(root, fold_dir)
        info = DataInfo(
            artifacts.n_users,
            artifacts.n_items,
            artifacts.scale,
            artifacts.train_mean,
            artifacts.items,
            artifacts.users,
        )
        model_class, params = MODELS.get(config.model), config.model_params()
        try:
            model_class.check_size(params, info, use="serve", max_memory=max_memory)
        except DeepMovieError as exc:  # the sizes are the run's config's
            raise DeepMovieError(f"{root / CONFIG}: {exc}") from None
        state = read_weights(fold_dir / WEIGHTS, config.model)
        model = model_class(params, info)
        model.load_weights(state, str(fold_dir / WEIGHTS))
        return cls(model, config, artifacts, read_summary(root))

    def save(self, out: Path | str, *, overwrite: bool = False) -> Path:
        """Write this recommender as a run directory that :meth:`load` (and ``deepmovie serve``) reads.

        A run, or a folder of other files, already at ``out`` is refused unless ``overwrite`` is set
        (:func:`deepmovie.rundir.claim_run`)."""
        out = Path(out)
        claim_run(out, dump_yaml(self.config.resolved()), overwrite=overwrite)
        save_atomic(weights_file(self.model, self.model.state_dict()), out / WEIGHTS)
        self.artifacts.write_shared(out)
        self.artifacts.write_seen(out)
        if self.summary is not None:
            write_text(out / SUMMARY, json.dumps(self.summary, indent=2) + "\n")
        return out

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

    # --- the API -------------------------------------------------------------------------------

    def predict(self, user: RawId, item: RawId) -> Prediction:
        """The predicted rating of ``item`` by a known ``user``."""
        u, i = self.user_index(user), self.item_index(item)
        score = float(self._pair_scores(np.array([u]), np.array([i]))[0])
        return Prediction(
            user=_raw(self.artifacts.user_ids, u),
            item=self.movie(i),
            rating=self._clip(score),
            raw_score=score,
        )

    def predict_many(
        self, users: Sequence[RawId] | np.ndarray, items: Sequence[RawId] | np.ndarray
    ) -> np.ndarray:
        """Predicted ratings (clipped to the scale) of ``(users[k], items[k])`` pairs in raw ids."""
        users, items = np.asarray(users), np.asarray(items)
        if users.shape != items.shape or users.ndim != 1:
            raise DeepMovieError(
                f"predict_many: users {users.shape} and items {items.shape} must be equal 1-d"
            )
        u = self._indices(self.artifacts.user_ids, users, self.known_users, "user")
        i = self._indices(self.artifacts.item_ids, items, self.known_items, "item")
        return self._clip_array(self._pair_scores(u, i))

    def recommend(
        self,
        user: RawId,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        offset: int = 0,
        explain: bool = True,
        **filters: Any,
    ) -> Recommendations:
        """Top ``k`` items for a known ``user`` (from position ``offset``: pagination); the items they
        rated are left out unless ``exclude_seen`` is off. ``filters``: see :class:`Filters`."""
        u = self.user_index(user)
        seen = self.artifacts.seen
        span = slice(seen.indptr[u], seen.indptr[u + 1])
        history = (seen.indices[span], seen.data[span])
        scores = self._user_scores(u)
        method = "factors" if self.factors is not None else "model scores"
        stars = scores if self.rater is self else self.rater._user_scores(u) if self.rater else None
        return self._ranked(
            scores,
            stars,
            history,
            _raw(self.artifacts.user_ids, u),
            method,
            k,
            offset,
            exclude_seen,
            explain,
            _filters(filters),
        )

    def recommend_new(
        self,
        ratings: Mapping[RawId, float],
        k: int = 10,
        *,
        exclude_seen: bool = True,
        offset: int = 0,
        explain: bool = True,
        **filters: Any,
    ) -> Recommendations:
        """Top ``k`` items for a new user given by ``{item: rating}``, folded in without retraining."""
        items, values = self._parse_cold(ratings)
        scores, method = self._folded(items, values)
        stars = None
        if self.rater is self:
            stars = scores
        elif self.rater is not None:
            try:
                stars = self.rater._folded(items, values)[0]
            except FoldInUnsupported:
                stars = None  # the list stands; no stars to show
        return self._ranked(
            scores, stars, (items, values), None, method, k, offset, exclude_seen, explain, _filters(filters)
        )

    def similar(self, item: RawId, k: int = 10) -> SimilarItems:
        """Items closest to ``item``: the model's own item-item weights where it has them, else the
        cosine of item factors shrunk by popularity (an item seen by three users cannot top the
        list), else of rating columns."""
        k = _check_k(k)
        i = self.item_index(item)
        similarity, method = self._item_weights(np.array([i]))
        similarity = similarity[0]
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
            "scoring": "factors" if self.factors is not None else "model scores",
            "cold_start": self._folds_in(),
        }

    # --- internals ----------------------------------------------------------------------------

    def _folds_in(self) -> bool:
        """Whether a new user can be folded in (asked of the model with one rating of a known item)."""
        if self.factors is not None:
            return True
        probe = np.flatnonzero(self.known_items)[:1]
        try:
            with torch.inference_mode():
                self.model.fold_in(probe, np.array([self.artifacts.scale.high]))
        except DeepMovieError:
            return False
        return True

    def _ranked(
        self,
        scores: np.ndarray,
        stars: np.ndarray | None,
        history: tuple[np.ndarray, np.ndarray],
        raw_user: RawId | None,
        method: str,
        k: int,
        offset: int,
        exclude_seen: bool,
        explain: bool,
        filters: Filters,
    ) -> Recommendations:
        k = _check_k(k)
        if isinstance(offset, bool) or not isinstance(offset, (int, np.integer)) or offset < 0:
            raise DeepMovieError(f"offset: {offset!r} is not a position (0 or more)")
        rated, values = history
        allowed = self.known_items & self._filters(filters)
        excluded = 0
        if exclude_seen:
            excluded = int(allowed[rated].sum())
            allowed[rated] = False
        wanted = offset + k
        if filters.max_per_genre is None and filters.diversity is None:
            picked = top_k(scores, allowed, wanted)
        else:
            picked = self._diverse(scores, allowed, wanted, filters)
        page = picked[offset:wanted]
        reasons = self._reasons(page, rated, values) if explain and len(rated) else {}
        items = [
            Scored.model_construct(
                **self._fields(i),
                score=round(float(scores[i]), 6),
                rating=self._stars(stars[i]) if stars is not None else None,
                because=reasons.get(int(i), []),
            )
            for i in page
        ]
        return Recommendations(
            user=raw_user,
            cold_start=raw_user is None,
            method=method,
            ranker=self.model_name,
            rater=self.rater.model_name if self.rater is not None else None,
            excluded_seen=excluded,
            offset=int(offset),
            items=items,
        )

    def _folded(self, items: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, str]:
        """A new user's scores: the factor view's ridge solve, else the model's own fold-in."""
        if self.factors is not None:
            return self.factors.scores(*self.factors.fold_in(items, values)), "fold-in (closed-form ridge)"
        with torch.inference_mode():
            return np.asarray(self.model.fold_in(items, values)), f"{self.model_name} fold-in"

    def _diverse(self, scores: np.ndarray, allowed: np.ndarray, wanted: int, filters: Filters) -> np.ndarray:
        """Greedy re-ranking of the best candidates: at most ``max_per_genre`` per genre, and/or MMR
        (``diversity`` = the weight of dissimilarity to what is already picked, Carbonell 1998)."""
        pool = top_k(scores, allowed, max(wanted * 10, 200))
        genres = self.artifacts.items.genres if self.artifacts.items is not None else None
        per_genre = np.zeros(genres.shape[1] if genres is not None else 0, dtype=np.int64)
        relevance = scores[pool].astype(np.float64)
        spread = relevance.max() - relevance.min() if len(pool) else 0.0
        relevance = (relevance - relevance.min()) / spread if spread > 0 else np.zeros_like(relevance)
        closest = np.zeros(len(pool))  # each candidate's highest similarity to a picked item
        weights = self._item_weights(pool, pool)[0] if filters.diversity is not None else None
        free = np.ones(len(pool), dtype=bool)
        picked: list[int] = []
        lam = filters.diversity or 0.0
        while len(picked) < wanted and free.any():
            value = (1 - lam) * relevance - lam * closest
            value[~free] = -np.inf
            if genres is not None and filters.max_per_genre is not None:
                full = (genres[pool] & (per_genre >= filters.max_per_genre)).any(1)
                value[full] = -np.inf
            best = int(np.argmax(value))
            if not np.isfinite(value[best]):
                break
            free[best] = False
            picked.append(int(pool[best]))
            if genres is not None:
                per_genre += genres[pool[best]].astype(bool)
            if weights is not None:
                closest = np.maximum(closest, weights[best])
        return np.asarray(picked, dtype=np.int64)

    def _item_weights(self, items: np.ndarray, columns: np.ndarray | None = None) -> tuple[np.ndarray, str]:
        """Item-item similarity of ``items`` to ``columns`` (default: every item), ``(len(items),
        len(columns))``, and how it was made. Only the columns asked for are computed where that is
        cheaper (factor and co-rating cosines): explaining a page of 10 needs 10 columns, not all."""
        wanted = slice(None) if columns is None else np.asarray(columns)
        with torch.inference_mode():
            own = self.model.item_neighbours(items, columns)
        if own is not None:
            return np.asarray(own, dtype=np.float64), f"{self.model_name} item-item weights"
        unit, method = self._item_vectors
        if sp.issparse(unit):
            rows = (unit[items] @ unit[wanted].T).toarray()
        else:  # through torch: NumPy's threaded BLAS crawled on a loaded machine (see factors.matvec)
            rows = (torch.from_numpy(unit[items]) @ torch.from_numpy(unit[wanted]).T).numpy()
        return np.asarray(rows, dtype=np.float64) * self._shrink[wanted], method

    def _reasons(self, page: np.ndarray, rated: np.ndarray, values: np.ndarray) -> dict[int, list[Reason]]:
        """For each recommended item, the user's liked items (rated at or above their own mean, or every
        interaction for ranking data) that add most to it, by the item-item weights."""
        liked = rated[values >= values.mean()] if len(values) else rated
        if len(liked) == 0:
            return {}
        weights = self._item_weights(liked, page)[0]  # (liked, page)
        reasons: dict[int, list[Reason]] = {}
        for column, item in enumerate(page):
            order = np.argsort(-weights[:, column], kind="stable")[:EXPLAIN]
            reasons[int(item)] = [
                Reason.model_construct(
                    item=self._movies[liked[j]]["item"],
                    title=self._movies[liked[j]]["title"],
                    weight=round(float(weights[j, column]), 4),
                )
                for j in order
                if weights[j, column] > 0
            ]
        return reasons

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

    def _range(self) -> tuple[float, float] | None:
        """The range a score is clipped to: the rating scale, [0, 1] for "like"; None for rankings."""
        task = self.model.task
        if task == "implicit":
            return None
        return (0.0, 1.0) if task == "like" else (self.artifacts.scale.low, self.artifacts.scale.high)

    def _clip(self, score: float) -> float:
        bounds = self._range()
        value = float(score) if bounds is None else min(max(float(score), bounds[0]), bounds[1])
        return round(value, 4)

    def _stars(self, value: float) -> float:
        """A predicted rating as shown: the rater's, clipped to the scale."""
        return self.rater._clip(value)

    def _clip_array(self, scores: np.ndarray) -> np.ndarray:
        bounds = self._range()
        return scores.astype(np.float64) if bounds is None else np.clip(scores, *bounds).astype(np.float64)

    def _pair_scores(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        if self.factors is not None:
            return self.factors.pairs(users, items)
        device = self.model.device
        parts = []
        with torch.inference_mode(), eval_mode(self.model):
            for start in range(0, len(users), PREDICT_BATCH):
                u = torch.as_tensor(users[start : start + PREDICT_BATCH], device=device).long()
                i = torch.as_tensor(items[start : start + PREDICT_BATCH], device=device).long()
                parts.append(to_numpy(self.model.predict(u, i)))
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    def _user_scores(self, u: int) -> np.ndarray:
        if self.factors is not None:
            return self.factors.user_scores(u)
        with torch.inference_mode():
            return to_numpy(self.model.score_items(torch.tensor([u], device=self.model.device))[0])

    def _indices(self, ids, raw: np.ndarray, known: np.ndarray, kind: str) -> np.ndarray:
        """Indices of raw ids, all at once; :class:`UnknownIdError` naming the first one not known."""
        found = ids.index_of(raw)
        bad = (found < 0) | ~known[np.maximum(found, 0)]
        if bad.any():
            first = np.flatnonzero(bad)[0]
            raise UnknownIdError(
                f"{kind} {raw[first]}: not an id this model was trained on ({int(bad.sum())} such pair(s))"
            )
        return found

    def _parse_cold(self, ratings: Mapping[RawId, float]) -> tuple[np.ndarray, np.ndarray]:
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

    def _filters(self, filters: Filters) -> np.ndarray:
        keep = self._item_counts >= filters.min_ratings
        items = self.artifacts.items
        metadata = filters.genres or filters.min_year is not None or filters.max_year is not None
        if metadata and items is None:
            raise DeepMovieError("this run's dataset has no item metadata: genre and year filters need it")
        if filters.genres:
            names = [g.lower() for g in items.genre_names]
            unknown = [g for g in filters.genres if g.lower() not in names]
            if unknown:
                raise DeepMovieError(f"genre {unknown[0]!r}: unknown (known: {', '.join(items.genre_names)})")
            columns = [names.index(g.lower()) for g in filters.genres]
            keep &= items.genres[:, columns].astype(bool).any(1)
        if filters.min_year is not None:
            keep &= items.years >= filters.min_year
        if filters.max_year is not None:
            keep &= (items.years <= filters.max_year) & (items.years > 0)
        for item in filters.exclude:
            keep[_lookup(self.artifacts.item_ids, item, "item")] = False
        return keep

    @cached_property
    def _item_vectors(self) -> tuple[np.ndarray | sp.csr_matrix, str]:
        """Unit-length item representations (factors, else centred rating columns) for models without
        item-item weights of their own: built on first need, so a model that has them never pays for it."""
        with torch.inference_mode():
            q = self.model.item_embeddings()
        if q is not None and q.shape[1] > 0:
            q = np.asarray(q, dtype=np.float32)
            return q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12), "item factors (cosine)"
        seen = self.artifacts.seen.astype(np.float64)
        counts = np.maximum(np.diff(seen.indptr), 1)
        user_means = np.asarray(seen.sum(1)).ravel() / counts
        centred = seen.copy()
        centred.data -= np.repeat(user_means, np.diff(seen.indptr))
        columns = sp.csr_matrix(centred.T)
        norms = np.sqrt(np.asarray(columns.multiply(columns).sum(1)).ravel())
        return sp.diags(1 / np.maximum(norms, 1e-12)) @ columns, "co-ratings (cosine)"


def weights_file(model: Model, state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """What ``model.pt`` holds: the format, the model's name and its state on the CPU."""
    cpu = {name: tensor.detach().cpu() for name, tensor in state.items()}
    return {"format": WEIGHTS_FORMAT, "model": model.name, "state": cpu}


def read_weights(path: Path, model_name: str) -> dict[str, torch.Tensor]:
    """The state dict in a ``model.pt``, checked to be of ``model_name`` in our format."""
    saved = load_weights(path)
    if (
        not isinstance(saved, dict)
        or saved.get("format") != WEIGHTS_FORMAT
        or saved.get("model") != model_name
    ):
        raise DeepMovieError(f"{path}: not weights of a {model_name!r} model in format {WEIGHTS_FORMAT}")
    return saved["state"]


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


def _filters(values: dict[str, Any]) -> Filters:
    try:
        return Filters(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise DeepMovieError(
            f"{where}: {first['msg']} (filters: {', '.join(Filters.model_fields)})"
        ) from None


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise DeepMovieError(f"k: {k!r} is not a positive number of items")
    return int(k)


def _lookup(ids, raw: RawId, kind: str) -> int:
    """Index of a raw id given as text or a number; :class:`UnknownIdError` when the model lacks it."""
    value: RawId = raw
    if ids.raw.dtype.kind in "iu":
        text = str(raw).strip()
        if isinstance(raw, bool) or not INTEGER.fullmatch(text):  # not '1_2', '1.0' or Arabic digits
            raise UnknownIdError(f"{kind} {raw!r}: not an id of this model ({kind} ids are integers)")
        value = int(text)
        if not -(2**63) <= value < 2**63:
            raise UnknownIdError(f"{kind} {raw}: not an id of this model")
    index = int(ids.index_of(np.array([value]))[0])
    if index < 0:
        raise UnknownIdError(f"{kind} {raw}: not an id of this model ({len(ids):,} {kind}s)")
    return index


def _raw(ids, index: int) -> RawId:
    return ids.raw[index].item()
