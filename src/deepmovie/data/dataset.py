"""Load a dataset (a built-in name, a MovieLens folder or a ratings file) into one validated object."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from deepmovie.data import catalog
from deepmovie.data.interactions import IdMap, Interactions, RatingScale
from deepmovie.data.movielens import Layout, detect_layout, load_side_info
from deepmovie.data.readers import RawRatings, read_ratings
from deepmovie.data.side import ItemInfo, UserInfo
from deepmovie.errors import DeepMovieError, where

log = logging.getLogger("deepmovie")
CACHE_MIN_ROWS = 1_000_000  # below this, parsing is already faster than any cache bookkeeping
CACHE_FORMAT = 1


@dataclass
class Dataset:
    """All ratings of a dataset over contiguous indices, with id maps, scale and side information."""

    name: str
    source: Path
    layout: str
    interactions: Interactions
    user_ids: IdMap
    item_ids: IdMap
    scale: RatingScale
    items: ItemInfo | None = None
    users: UserInfo | None = None
    test_rows: np.ndarray | None = None  # rows that came from an explicit --test-file

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def describe(self) -> str:
        density = len(self.interactions) / max(self.n_users * self.n_items, 1)
        return (
            f"{self.name}: {len(self.interactions):,} ratings, {self.n_users:,} users, "
            f"{self.n_items:,} items, density {density:.4%}, scale {self.scale.low:g}..{self.scale.high:g}"
        )


@dataclass(frozen=True)
class ReadOptions:
    """How to read a ratings file that is not a known MovieLens layout."""

    sep: str | None = None
    columns: dict[str, str] | None = None
    header: bool | None = None
    encoding: str = "utf-8"
    scale: RatingScale | None = None


def load_dataset(
    data: str | Path,
    *,
    options: ReadOptions | None = None,
    test_file: str | Path | None = None,
    item_docs: str | Path | None = None,
) -> Dataset:
    """Resolve ``data`` and load it; with ``test_file``, its rows are kept apart as ``test_rows``."""
    options = options or ReadOptions()
    folder, ratings_path, layout = _resolve(str(data))
    started = time.perf_counter()
    ratings_options = (
        options
        if layout.name == "generic"
        else ReadOptions(
            layout.sep, options.columns, layout.header, layout.encoding, options.scale or layout.scale
        )
    )
    scale = ratings_options.scale
    paths = [ratings_path] + ([Path(test_file)] if test_file else [])
    users, items, ratings, timestamps, test_rows, user_ids, item_ids = _read_cached(paths, ratings_options)
    if scale is None:
        scale = RatingScale.infer(ratings)
    interactions = Interactions(users, items, ratings, len(user_ids), len(item_ids), timestamps)
    elapsed = time.perf_counter() - started
    log.info(
        "read %s ratings from %s in %.2f s (%s rows/s)",
        f"{len(ratings):,}",
        ratings_path,
        elapsed,
        f"{len(ratings) / max(elapsed, 1e-9):,.0f}",
    )
    item_info = user_info = None
    if folder is not None:
        item_info, user_info = load_side_info(folder, item_ids, user_ids)
        _check_listed(ratings_path, interactions, user_ids, item_ids, item_info, user_info)
    if item_docs is not None:
        if item_info is None:
            raise DeepMovieError(f"{item_docs}: item documents need item metadata, and {data} has none")
        item_info.load_documents(Path(item_docs), item_ids)
    name = str(data) if str(data) in catalog.RELEASES else Path(data).name
    return Dataset(
        name,
        ratings_path,
        layout.name,
        interactions,
        user_ids,
        item_ids,
        scale,
        item_info,
        user_info,
        test_rows,
    )


def _resolve(data: str) -> tuple[Path | None, Path, Layout]:
    """(folder with side files, ratings file, layout) for a name, folder or file."""
    if data in catalog.RELEASES:
        folder = catalog.installed_path(data)
        if folder is None:
            raise DeepMovieError(
                f"dataset {data!r} is not downloaded: run `deepmovie fetch {data}` (or pass its folder)"
            )
        layout, path = detect_layout(folder)
        return folder, path, layout
    path = Path(data)
    if path.is_dir():
        layout, ratings = detect_layout(path)
        return path, ratings, layout
    if path.is_file():
        return path.parent, path, Layout("generic", path.name)
    known = ", ".join(catalog.RELEASES)
    raise DeepMovieError(f"{data}: no such file or folder, and not a dataset name ({known})")


def _read_cached(paths: list[Path], options: ReadOptions):
    """Parse, validate and encode the ratings files, through a binary cache for big ones."""
    key = _cache_key(paths, options)
    folder = catalog.home() / "cache" / key
    if (folder / "meta.json").is_file():
        meta = json.loads((folder / "meta.json").read_text())
        arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in meta["arrays"]}
        return (
            arrays["users"],
            arrays["items"],
            arrays["ratings"],
            arrays.get("timestamps"),
            arrays.get("test_rows"),
            IdMap(np.asarray(arrays["user_raw"])),
            IdMap(np.asarray(arrays["item_raw"])),
        )
    result = _read_and_encode(paths, options)
    if len(result[2]) >= CACHE_MIN_ROWS:
        _write_cache(folder, result)
    return result


def _cache_key(paths: list[Path], options: ReadOptions) -> str:
    parts: list[object] = [CACHE_FORMAT, repr(options)]
    for path in paths:
        stat = path.stat()
        parts += [str(path.resolve()), stat.st_size, stat.st_mtime_ns]
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:24]


def _write_cache(folder: Path, result) -> None:
    users, items, ratings, timestamps, test_rows, user_ids, item_ids = result
    arrays = {
        "users": users,
        "items": items,
        "ratings": ratings,
        "user_raw": user_ids.raw,
        "item_raw": item_ids.raw,
        "timestamps": timestamps,
        "test_rows": test_rows,
    }
    arrays = {k: v for k, v in arrays.items() if v is not None}
    if any(a.dtype.kind == "O" for a in arrays.values()):
        return
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", array)
        (tmp / "meta.json").write_text(json.dumps({"arrays": sorted(arrays)}))
        os.replace(tmp, folder)
    except OSError as exc:  # a read-only or full cache only costs speed
        log.warning("could not write the load cache %s: %s", folder, exc)


def _read_and_encode(paths: list[Path], options: ReadOptions):
    raws = [
        read_ratings(
            p, sep=options.sep, columns=options.columns, header=options.header, encoding=options.encoding
        )
        for p in paths
    ]
    for raw in raws:
        if options.scale is not None:
            _check_range(raw, options.scale)
    if len(raws) == 2 and (raws[0].users.dtype.kind in "iu") != (raws[1].users.dtype.kind in "iu"):
        raws = [_as_text_ids(r) for r in raws]
    user_ids, users = IdMap.encode(_join([r.users for r in raws]))
    item_ids, items = IdMap.encode(_join([r.items for r in raws]))
    ratings = _join([r.ratings for r in raws])
    has_time = all(r.timestamps is not None for r in raws)
    timestamps = _join([r.timestamps for r in raws]) if has_time else None
    parts = [(len(r.ratings), r.path) for r in raws]
    del raws  # the raw columns are no longer needed: keep peak memory down
    kept, offset = [], 0
    for size, path in parts:
        part = slice(offset, offset + size)
        rows = _deduplicate(
            users[part], items[part], len(item_ids), None if timestamps is None else timestamps[part], path
        )
        kept.append((offset, size, rows))
        offset += size
    n_train = kept[0][1] if kept[0][2] is None else len(kept[0][2])
    if any(rows is not None for _, _, rows in kept):
        rows = np.concatenate([np.arange(o, o + n) if r is None else r + o for o, n, r in kept])
        users, items, ratings = users[rows], items[rows], ratings[rows]
        timestamps = timestamps[rows] if timestamps is not None else None
    test_rows = np.arange(n_train, len(ratings)) if len(parts) == 2 else None
    pa.default_memory_pool().release_unused()  # PyArrow keeps freed parse buffers (~1 GB at 20M rows)
    return users, items, ratings, timestamps, test_rows, user_ids, item_ids


def _join(arrays: list[np.ndarray]) -> np.ndarray:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def _check_listed(
    path: Path,
    data: Interactions,
    user_ids: IdMap,
    item_ids: IdMap,
    items: ItemInfo | None,
    users: UserInfo | None,
) -> None:
    """Refuse ratings whose user or item the folder's side files do not list (unknown ids)."""
    for kind, info, column, ids in (
        ("item", items, data.items, item_ids),
        ("user", users, data.users, user_ids),
    ):
        if info is None:
            continue
        unlisted = ~info.listed[column]
        if unlisted.any():
            row = int(np.flatnonzero(unlisted)[0])
            raw_user, raw_item = user_ids.raw[data.users[row]], item_ids.raw[data.items[row]]
            raise DeepMovieError(
                f"{where(path, _find_line(path, raw_user, raw_item))}: {kind} "
                f"{ids.raw[column[row]]} is not listed in the dataset's {kind} file "
                f"({int(unlisted.sum()):,} rating(s) name unlisted {kind}s); remove those rows, or "
                "load the ratings file on its own"
            )


def _find_line(path: Path, user: object, item: object) -> int | None:
    """Line of the first row rating ``item`` by ``user`` (error path only: a plain text scan)."""
    pattern = re.compile(rf"^\s*{re.escape(str(user))}\W+{re.escape(str(item))}\W")
    with open(path, encoding="latin-1") as handle:
        for number, line in enumerate(handle, start=1):
            if pattern.match(line):
                return number
    return None


def _as_text_ids(raw: RawRatings) -> RawRatings:
    raw.users, raw.items = raw.users.astype(str), raw.items.astype(str)
    return raw


def _check_range(raw: RawRatings, scale: RatingScale) -> None:
    bad = (raw.ratings < scale.low) | (raw.ratings > scale.high)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DeepMovieError(
            f"{where(raw.path, raw.line_of(row))}: rating {raw.ratings[row]:g} is outside "
            f"{scale.low:g}..{scale.high:g} ({int(bad.sum())} such row(s); set the scale with "
            "--rating-scale LOW:HIGH if the file is right)"
        )


def _deduplicate(
    users: np.ndarray, items: np.ndarray, n_items: int, timestamps: np.ndarray | None, path: Path
) -> np.ndarray | None:
    """Indices of the rows to keep (None: all of them): for a repeated (user, item), the latest row
    (else the last)."""
    keys = users.astype(np.int64) * n_items + items
    if np.all(keys[1:] > keys[:-1]):  # sorted by user then item, as MovieLens files are: O(n)
        return None
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    repeated = sorted_keys[1:] == sorted_keys[:-1]
    if not repeated.any():
        return None
    # The stable sort leaves each group in file order; the winner is the last row among those with
    # the group's latest timestamp (or simply the last row).
    starts = np.flatnonzero(np.r_[True, ~repeated])
    position = np.arange(len(keys))
    if timestamps is not None:
        stamps = timestamps[order]
        latest = np.maximum.reduceat(stamps, starts)
        group = np.cumsum(np.r_[True, ~repeated]) - 1
        position = np.where(stamps == latest[group], position, -1)
    kept = np.sort(order[np.maximum.reduceat(position, starts)])
    log.warning(
        "%s: %s duplicate (user, item) row(s) dropped, keeping the %s rating of each pair",
        path,
        f"{len(keys) - len(kept):,}",
        "latest" if timestamps is not None else "last",
    )
    return kept
