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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from deepmovie.config import RunConfig, build_config, dump_yaml, load_config_file
from deepmovie.errors import DeepMovieError
from deepmovie.files import write_text
from deepmovie.models import MODELS, DataInfo, Model
from deepmovie.models.factors import matvec, to_numpy
from deepmovie.models.layers import eval_mode
from deepmovie.recommender.artifacts import Artifacts, load_artifacts, locate
from deepmovie.recommender.schemas import (
    History,
    Movie,
    Prediction,
    Rated,
    RawId,
    Recommendations,
    Scored,
    Similar,
    SimilarItems,
)
from deepmovie.rundir import CONFIG, SUMMARY, WEIGHTS
from deepmovie.training.checkpoint import load_weights, save_atomic

MAX_COLD_RATINGS = 1000
PREDICT_BATCH = 1 << 18
WEIGHTS_FORMAT = 1


class UnknownIdError(DeepMovieError):
    """A user or item the model cannot score (the API answers 404)."""


class Recommender:
    """A trained model, its id maps, item metadata and the ratings it saw; ``summary`` holds its test
    figures when it was trained here (or the run's ``summary.json`` when loaded)."""

    def __init__(
        self, model: Model, config: RunConfig, artifacts: Artifacts, summary: dict[str, Any] | None = None
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
        self._movies = [self._movie_fields(i) for i in range(artifacts.n_items)]
        self._unit_items = self._item_vectors()

    @property
    def model_name(self) -> str:
        return self.config.model

    # --- files --------------------------------------------------------------------------------

    @classmethod
    def load(cls, run_dir: Path | str) -> Recommender:
        """Load a run directory (or one fold of a k-fold run) on the CPU, without the training data."""
        root, fold_dir = locate(Path(run_dir))
        config = build_config(load_config_file(root / CONFIG))
        artifacts = load_artifacts(root, fold_dir)
        state = read_weights(fold_dir / WEIGHTS, config.model)
        info = DataInfo(
            artifacts.n_users,
            artifacts.n_items,
            artifacts.scale,
            artifacts.train_mean,
            artifacts.items,
            artifacts.users,
        )
        model = MODELS.get(config.model)(config.model_params(), info)
        model.load_weights(state, str(fold_dir / WEIGHTS))
        return cls(model, config, artifacts, _read_summary(root / SUMMARY))

    def save(self, out: Path | str, *, overwrite: bool = False) -> Path:
        """Write this recommender as a run directory that :meth:`load` (and ``deepmovie serve``) reads.

        An existing directory is refused unless it is empty, or a run and ``overwrite`` is set: files
        that are not a run's are never replaced."""
        out = Path(out)
        claim_run_dir(out, overwrite)
        write_text(out / CONFIG, dump_yaml(self.config.resolved()))
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
        genre: str | None = None,
        min_year: int | None = None,
        max_year: int | None = None,
        exclude: Sequence[RawId] = (),
    ) -> Recommendations:
        """Top ``k`` items for a known ``user``; the items they rated are left out unless
        ``exclude_seen`` is off. Filters: a genre, a release-year range, items to leave out."""
        u = self.user_index(user)
        seen = self.artifacts.seen
        rated = seen.indices[seen.indptr[u] : seen.indptr[u + 1]]
        scores = self._user_scores(u)
        method = "factors" if self.factors is not None else "model scores"
        return self._ranked(
            scores,
            rated,
            _raw(self.artifacts.user_ids, u),
            method,
            k,
            exclude_seen,
            genre,
            min_year,
            max_year,
            exclude,
        )

    def recommend_new(
        self,
        ratings: Mapping[RawId, float],
        k: int = 10,
        *,
        exclude_seen: bool = True,
        genre: str | None = None,
        min_year: int | None = None,
        max_year: int | None = None,
        exclude: Sequence[RawId] = (),
    ) -> Recommendations:
        """Top ``k`` items for a new user given by ``{item: rating}``, folded in without retraining."""
        items, values = self._parse_cold(ratings)
        if self.factors is not None:
            scores, method = (
                self.factors.scores(*self.factors.fold_in(items, values)),
                "fold-in (closed-form ridge)",
            )
        else:
            with torch.inference_mode():
                scores, method = self.model.fold_in(items, values), f"{self.model_name} fold-in"
        return self._ranked(
            np.asarray(scores), items, None, method, k, exclude_seen, genre, min_year, max_year, exclude
        )

    def similar(self, item: RawId, k: int = 10) -> SimilarItems:
        """Items closest to ``item``: cosine of item factors, or of rating columns for other models."""
        k = _check_k(k)
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
        rated: np.ndarray,
        raw_user: RawId | None,
        method: str,
        k: int,
        exclude_seen: bool,
        genre: str | None,
        min_year: int | None,
        max_year: int | None,
        exclude: Sequence[RawId],
    ) -> Recommendations:
        k = _check_k(k)
        allowed = self.known_items & self._filters(genre, min_year, max_year)
        for item in exclude:
            allowed[_lookup(self.artifacts.item_ids, item, "item")] = False
        excluded = 0
        if exclude_seen:
            excluded = int(allowed[rated].sum())
            allowed[rated] = False
        top = top_k(scores, allowed, k)
        return Recommendations(
            user=raw_user,
            cold_start=raw_user is None,
            method=method,
            excluded_seen=excluded,
            items=[Scored.model_construct(**self._fields(i), rating=self._clip(scores[i])) for i in top],
        )

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

    def _filters(self, genre: str | None, min_year: int | None, max_year: int | None) -> np.ndarray:
        keep = np.ones(self.artifacts.n_items, dtype=bool)
        items = self.artifacts.items
        if (genre is not None or min_year is not None or max_year is not None) and items is None:
            raise DeepMovieError("this run's dataset has no item metadata: genre and year filters need it")
        if genre is not None:
            names = [g.lower() for g in items.genre_names]
            if genre.lower() not in names:
                raise DeepMovieError(f"genre {genre!r}: unknown (known: {', '.join(items.genre_names)})")
            keep &= items.genres[:, names.index(genre.lower())].astype(bool)
        if min_year is not None:
            keep &= items.years >= min_year
        if max_year is not None:
            keep &= (items.years <= max_year) & (items.years > 0)
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


def claim_run_dir(out: Path, overwrite: bool) -> None:
    """Make ``out`` ready for a run's files: new or empty, or a run when ``overwrite`` is set; a
    directory of other files is never written into."""
    if out.exists() and not out.is_dir():
        raise DeepMovieError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not (out / CONFIG).is_file():
            raise DeepMovieError(f"{out}: not empty and not a DeepMovie run; choose another directory")
        if not overwrite:
            raise DeepMovieError(f"{out}: already holds a run; pass overwrite=True to replace it")
    out.mkdir(parents=True, exist_ok=True)


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


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise DeepMovieError(f"k: {k!r} is not a positive number of items")
    return int(k)


def _read_summary(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (ValueError, OSError) as exc:
        raise DeepMovieError(f"{path}: not a readable summary ({exc})") from None


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
