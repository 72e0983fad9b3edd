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

from deepmovie import __version__
from deepmovie.config import RunConfig, build_config, load_config_file
from deepmovie.data.dataset import Dataset
from deepmovie.data.interactions import IdMap, Interactions, RatingScale
from deepmovie.data.side import ItemInfo, UserInfo
from deepmovie.errors import DeepMovieError
from deepmovie.files import write_arrays, write_text
from deepmovie.rundir import CONFIG, ID_MAPS, ITEMS, MANIFEST, SEEN, USERS
from deepmovie.splits import Split

FORMAT = 1


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
    try:
        manifest = json.loads((root / MANIFEST).read_text())
        version = manifest["format"]
        scale = RatingScale(**manifest["scale"])
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise DeepMovieError(f"{root / MANIFEST}: not a serving manifest ({exc})") from None
    if version != FORMAT:
        raise DeepMovieError(
            f"{root / MANIFEST}: artifact format {version!r} (written by deepmovie "
            f"{manifest.get('deepmovie', '?')}); this deepmovie {__version__} reads format {FORMAT}: "
            "train the run again or use a matching deepmovie"
        )
    ids = _arrays(root / ID_MAPS)
    user_ids, item_ids = IdMap(ids["users"]), IdMap(ids["items"])
    seen_arrays = _arrays(fold_dir / SEEN)
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
        scale,
        _items(root, manifest, len(item_ids)),
        _users(root, manifest),
        seen,
        train_mean,
    )


def _arrays(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DeepMovieError(f"{path}: no such file (an incomplete run directory)")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DeepMovieError(f"{path}: not a readable artifact ({exc})") from None


def _items(root: Path, manifest: dict, n_items: int) -> ItemInfo | None:
    if manifest.get("genre_names") is None:
        return None
    arrays = _arrays(root / ITEMS)
    return ItemInfo(
        _unpacked(arrays, "titles"),
        arrays["years"],
        list(manifest["genre_names"]),
        arrays["genres"],
        [[] for _ in range(n_items)],
        arrays["listed"],
        _unpacked(arrays, "documents"),
    )


def _packed(name: str, texts: list[str]) -> dict[str, np.ndarray]:
    """Texts as one UTF-8 byte string and the offsets into it: a fixed-width ``<U`` array takes four
    bytes a character times the longest text for every item (90 MB of documents for ml-latest-small)."""
    encoded = [text.encode("utf-8") for text in texts]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    return {f"{name}_utf8": np.frombuffer(b"".join(encoded), dtype=np.uint8), f"{name}_offsets": offsets}


def _unpacked(arrays: dict[str, np.ndarray], name: str) -> list[str]:
    """The texts :func:`_packed` stored (or a run's from before it: one ``<U`` array; none: empty)."""
    if name in arrays:
        return [str(text) for text in arrays[name]]
    if f"{name}_utf8" not in arrays:
        return []
    data, offsets = arrays[f"{name}_utf8"].tobytes(), arrays[f"{name}_offsets"].tolist()
    return [data[a:b].decode("utf-8") for a, b in itertools.pairwise(offsets)]


def _users(root: Path, manifest: dict) -> UserInfo | None:
    fields = manifest.get("user_fields")
    if fields is None:
        return None
    arrays = _arrays(root / USERS)
    return UserInfo(
        {name: (arrays[f"field_{name}"], list(vocab)) for name, vocab in fields.items()}, arrays["listed"]
    )
