"""What a trained model needs beside its weights to serve, in memory and in a run directory.

``serving.json`` (the versioned manifest: rating scale, genre names, user feature vocabularies),
``ids.npz`` (raw ids by index), ``items.npz`` (titles, years, multi-hot genres, documents) and
``users.npz`` (user feature codes) sit beside ``config.yaml``; each fold directory gets ``seen.npz``:
the CSR of the train + valid ratings (what the model saw: excluded from recommendations, a user's
history, and AutoRec's input rows) and the training mean the model was built with. Everything is plain
arrays read with ``allow_pickle=False`` and written atomically.
"""

from __future__ import annotations

import itertools
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from deepmovie import __version__
from deepmovie.config import RunConfig, build_config, load_config_file
from deepmovie.data.dataset import Dataset
from deepmovie.data.interactions import IdMap, Interactions, RatingScale
from deepmovie.data.side import ItemInfo, UserInfo
from deepmovie.errors import DeepMovieError
from deepmovie.files import regular_file, write_arrays, write_text
from deepmovie.rundir import CONFIG, ID_MAPS, ITEMS, MANIFEST, SEEN, USERS
from deepmovie.splits import Split

FORMAT = 1


class Manifest(BaseModel):
    """``serving.json`` as read back: every field checked, so a damaged one is named here rather than
    met as a wrong type (or a NaN scale) in the middle of a request."""

    model_config = ConfigDict(allow_inf_nan=False)

    format: int
    deepmovie: str = "?"
    scale: RatingScale
    genre_names: list[str] | None = None
    user_fields: dict[str, list[str]] | None = None

    @field_validator("scale")
    @classmethod
    def _ordered(cls, scale: RatingScale) -> RatingScale:
        if not (scale.low < scale.high and scale.step >= 0):
            raise ValueError(f"{scale.low:g}..{scale.high:g} in steps of {scale.step:g} is no rating scale")
        return scale


@dataclass(frozen=True)
class Artifacts:
    """Ids, scale, side information and the seen ratings of one trained model."""

    user_ids: IdMap
    item_ids: IdMap
    scale: RatingScale
    items: ItemInfo | None
    users: UserInfo | None
    seen: sp.csr_matrix  # users x items, train + valid ratings
    train_mean: float

    @classmethod
    def of(cls, dataset: Dataset, split: Split) -> Artifacts:
        """The artifacts of a model trained on ``split`` of ``dataset`` (its train + valid rows seen)."""
        return cls(
            dataset.user_ids,
            dataset.item_ids,
            dataset.scale,
            dataset.items,
            dataset.users,
            split.train.concat(split.valid).csr(),
            float(np.mean(split.train.ratings)),
        )

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def interactions(self) -> Interactions:
        """The seen ratings as rows, for a model's ``attach``."""
        coo = self.seen.tocoo()
        return Interactions(
            coo.row.astype(np.int32), coo.col.astype(np.int32), coo.data, self.n_users, self.n_items
        )

    def write_shared(self, root: Path) -> None:
        """The files every fold shares: id maps, metadata and the manifest (written last)."""
        items, users = self.items, self.users
        write_arrays(root / ID_MAPS, users=self.user_ids.raw, items=self.item_ids.raw)
        if items is not None:
            write_arrays(
                root / ITEMS,
                compress=True,
                **_packed("titles", items.titles),
                years=items.years,
                genres=items.genres,
                listed=items.listed,
                **_packed("documents", items.documents),  # what a text encoder reads
            )
        if users is not None:
            fields = {f"field_{name}": codes for name, (codes, _) in users.fields.items()}
            write_arrays(root / USERS, listed=users.listed, **fields)
        manifest = {
            "format": FORMAT,
            "deepmovie": __version__,
            "scale": self.scale.to_dict(),
            "genre_names": items.genre_names if items is not None else None,
            "user_fields": {name: vocab for name, (_, vocab) in users.fields.items()} if users else None,
        }
        write_text(root / MANIFEST, json.dumps(manifest, indent=2) + "\n")

    def write_seen(self, fold_dir: Path) -> None:
        seen = self.seen
        write_arrays(
            fold_dir / SEEN,
            indptr=seen.indptr,
            indices=seen.indices,
            ratings=seen.data,
            train_mean=np.float64(self.train_mean),
        )


def locate(run_dir: Path) -> tuple[Path, Path]:
    """(run root, fold directory) of a run directory or of one fold of a k-fold run."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DeepMovieError(f"{run_dir}: no such run directory")
    root = run_dir if (run_dir / MANIFEST).is_file() else run_dir.parent
    if not (root / MANIFEST).is_file():
        raise DeepMovieError(
            f"{run_dir}: no {MANIFEST}; this run was trained before serving artifacts existed "
            "(or did not finish): train it again"
        )
    if not (run_dir / SEEN).is_file():
        folds = sorted(p.name for p in run_dir.glob("fold-*") if p.is_dir())
        hint = f"pass one of its folds, e.g. {run_dir / folds[0]}" if folds else "train it again"
        raise DeepMovieError(f"{run_dir}: no {SEEN} here; {hint}")
    return root, run_dir


def read_config(run_dir: Path) -> RunConfig:
    """The config a run was trained with; a missing, empty or invalid ``config.yaml`` is named."""
    path = run_dir / CONFIG
    if not path.is_file():
        raise DeepMovieError(f"{run_dir}: not a run directory (no {CONFIG})")
    values = load_config_file(path)
    if not values:
        raise DeepMovieError(f"{path}: empty; this run directory is damaged")
    try:
        return build_config(values)
    except DeepMovieError as exc:
        raise DeepMovieError(f"{path}: {exc}") from None


def load_artifacts(root: Path, fold_dir: Path) -> Artifacts:
    """Read and check the artifacts; an unknown format version is refused with the versions named."""
    path = root / MANIFEST
    try:
        values = json.loads(regular_file(path).read_text())
    except (ValueError, OSError) as exc:
        raise DeepMovieError(f"{path}: not a serving manifest ({exc})") from None
    if not isinstance(values, dict) or "format" not in values:
        raise DeepMovieError(f"{path}: not a serving manifest (no format)")
    if values["format"] != FORMAT:
        raise DeepMovieError(
            f"{path}: artifact format {values['format']!r} (written by deepmovie "
            f"{values.get('deepmovie', '?')}); this deepmovie {__version__} reads format {FORMAT}: "
            "train the run again or use a matching deepmovie"
        )
    try:
        manifest = Manifest.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"])
        raise DeepMovieError(f"{path}: not a serving manifest ({field}: {error['msg']})") from None
    ids = _arrays(root / ID_MAPS, "users", "items")
    user_ids, item_ids = IdMap(ids["users"]), IdMap(ids["items"])
    seen_arrays = _arrays(fold_dir / SEEN, "indptr", "indices", "ratings", "train_mean")
    try:
        seen = sp.csr_matrix(
            (seen_arrays["ratings"], seen_arrays["indices"], seen_arrays["indptr"]),
            shape=(len(user_ids), len(item_ids)),
        )
        train_mean = float(seen_arrays["train_mean"])
    except (KeyError, ValueError, TypeError) as exc:
        raise DeepMovieError(f"{fold_dir / SEEN}: not a seen-ratings artifact ({exc})") from None
    return Artifacts(
        user_ids,
        item_ids,
        manifest.scale,
        _items(root, manifest, len(item_ids)),
        _users(root, manifest, len(user_ids)),
        seen,
        train_mean,
    )


def _arrays(path: Path, *names: str) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` artifact, ``names`` among them."""
    if not path.exists():
        raise DeepMovieError(f"{path}: no such file (an incomplete run directory)")
    try:
        with np.load(regular_file(path), allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DeepMovieError(f"{path}: not a readable artifact ({exc})") from None
    missing = [name for name in names if name not in arrays]
    if missing:
        raise DeepMovieError(f"{path}: no {missing[0]!r} array; this run directory is damaged")
    return arrays


def _sized(path: Path, arrays: dict[str, np.ndarray | list], count: int) -> None:
    """Refuse an artifact whose per-item (or per-user) arrays are not ``count`` long."""
    for name, values in arrays.items():
        if len(values) != count:
            raise DeepMovieError(
                f"{path}: {name!r} has {len(values):,} rows, not {count:,}; this run directory is damaged"
            )


def _items(root: Path, manifest: Manifest, n_items: int) -> ItemInfo | None:
    if manifest.genre_names is None:
        return None
    path = root / ITEMS
    arrays = _arrays(path, "years", "genres", "listed")
    titles, documents = _unpacked(path, arrays, "titles"), _unpacked(path, arrays, "documents")
    per_item = {name: arrays[name] for name in ("years", "genres", "listed")}
    _sized(path, {**per_item, "titles": titles, **({"documents": documents} if documents else {})}, n_items)
    genres = arrays["genres"]
    if genres.ndim != 2 or genres.shape[1] != len(manifest.genre_names):
        raise DeepMovieError(f"{path}: 'genres' does not match the {len(manifest.genre_names)} genre names")
    return ItemInfo(
        titles,
        arrays["years"],
        manifest.genre_names,
        genres,
        [[] for _ in range(n_items)],
        arrays["listed"],
        documents,
    )


def _packed(name: str, texts: list[str]) -> dict[str, np.ndarray]:
    """Texts as one UTF-8 byte string and the offsets into it: a fixed-width ``<U`` array takes four
    bytes a character times the longest text for every item (90 MB of documents for ml-latest-small)."""
    encoded = [text.encode("utf-8") for text in texts]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    return {f"{name}_utf8": np.frombuffer(b"".join(encoded), dtype=np.uint8), f"{name}_offsets": offsets}


def _unpacked(path: Path, arrays: dict[str, np.ndarray], name: str) -> list[str]:
    """The texts :func:`_packed` stored (or a run's from before it: one ``<U`` array; none: empty)."""
    if name in arrays:
        return [str(text) for text in arrays[name]]
    if f"{name}_utf8" not in arrays:
        return []
    try:
        data, offsets = arrays[f"{name}_utf8"].tobytes(), arrays[f"{name}_offsets"].tolist()
        return [data[a:b].decode("utf-8") for a, b in itertools.pairwise(offsets)]
    except (KeyError, UnicodeDecodeError) as exc:
        raise DeepMovieError(f"{path}: {name!r} texts are damaged ({exc})") from None


def _users(root: Path, manifest: Manifest, n_users: int) -> UserInfo | None:
    if manifest.user_fields is None:
        return None
    path = root / USERS
    names = {name: f"field_{name}" for name in manifest.user_fields}
    arrays = _arrays(path, "listed", *names.values())
    _sized(path, {"listed": arrays["listed"], **{key: arrays[key] for key in names.values()}}, n_users)
    return UserInfo(
        {name: (arrays[key], manifest.user_fields[name]) for name, key in names.items()}, arrays["listed"]
    )
