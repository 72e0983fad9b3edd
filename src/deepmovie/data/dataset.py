"""Load a dataset (a built-in name, a MovieLens folder, a ratings file or a table in memory) into one
validated object."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from deepmovie.data import catalog
from deepmovie.data.interactions import IdMap, Interactions, RatingScale
from deepmovie.data.movielens import Layout, detect_layout, load_side_info
from deepmovie.data.readers import RawRatings, _is_number, id_values, read_ratings, to_int64
from deepmovie.data.side import ItemInfo, UserInfo
from deepmovie.errors import DeepMovieError, where
from deepmovie.files import path_kind, regular_file

log = logging.getLogger("deepmovie")
CACHE_MIN_ROWS = 1_000_000  # below this, parsing is already faster than any cache bookkeeping
CACHE_FORMAT = 1
# In-memory data has no files beside it: a source under a folder that does not exist keeps file-based
# features (ML-100K's fold files, next to ``source``) from picking up files in the working directory.
MEMORY = Path("<memory>")
FILE_SCALE_HINT = "set the scale with --rating-scale LOW:HIGH if the file is right"
MEMORY_SCALE_HINT = "pass scale=(LOW, HIGH) if the data is right"


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
    items_with_text: int | None = None  # items whose document came from --item-docs (None: no such file)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def describe(self) -> str:
        density = len(self.interactions) / max(self.n_users * self.n_items, 1)
        # The run summary's "dataset": how many documents are real text, not built from metadata.
        texts = "" if self.items_with_text is None else f", {self.items_with_text:,} items with text"
        return (
            f"{self.name}: {len(self.interactions):,} ratings, {self.n_users:,} users, "
            f"{self.n_items:,} items{texts}, density {density:.4%}, "
            f"scale {self.scale.low:g}..{self.scale.high:g}"
        )

    @classmethod
    def from_arrow(
        cls,
        table: pa.Table,
        *,
        user: str = "user",
        item: str = "item",
        rating: str = "rating",
        timestamp: str | None = None,
        scale: tuple[float, float] | RatingScale | None = None,
        name: str = "table",
    ) -> Dataset:
        """A dataset from ratings already in memory, held to the same checks as a ratings file (so a
        model never sees data the CLI would refuse); errors name the column and the 0-based row."""
        if not isinstance(table, pa.Table):
            raise DeepMovieError(f"{name}: expected a pyarrow.Table, got {type(table).__name__}")
        columns = _roles(user, item, rating, timestamp)
        _require_columns(table.column_names, columns, name)
        if table.num_rows == 0:
            raise DeepMovieError(f"{name}: the table is empty (no rating rows)")
        source = MEMORY / name
        values = {role: _table_column(table, column, role, name) for role, column in columns.items()}
        raws = [
            RawRatings(values["user"], values["item"], values["rating"], values.get("timestamp"), source, -1)
        ]
        del values  # only raws holds the columns now: _encode frees them once encoded
        rating_scale = _scale_of(scale, name)
        if rating_scale is not None:
            _check_range(raws[0].ratings, rating_scale, lambda row: _at(name, rating, row), MEMORY_SCALE_HINT)
        users, items, ratings, timestamps, _, user_ids, item_ids = _encode(raws)
        interactions = Interactions(users, items, ratings, len(user_ids), len(item_ids), timestamps)
        rating_scale = rating_scale or RatingScale.infer(ratings)
        return cls(name, source, "memory", interactions, user_ids, item_ids, rating_scale)

    @classmethod
    def from_pandas(
        cls,
        df: Any,
        *,
        user: str = "user",
        item: str = "item",
        rating: str = "rating",
        timestamp: str | None = None,
        scale: tuple[float, float] | RatingScale | None = None,
        name: str = "dataframe",
    ) -> Dataset:
        """A dataset from a pandas DataFrame, through Arrow (pandas stays an optional dependency). Only
        the used columns are converted: other columns cannot fail the conversion or cost memory."""
        try:
            import pandas as pd
        except ImportError:
            raise DeepMovieError("Dataset.from_pandas needs pandas: pip install 'pandas>=2'") from None
        if not isinstance(df, pd.DataFrame):
            raise DeepMovieError(f"{name}: expected a pandas DataFrame, got {type(df).__name__}")
        columns = _roles(user, item, rating, timestamp)
        _require_columns([str(c) for c in df.columns], columns, name)
        used = [c for c in df.columns if str(c) in columns.values()]
        try:
            table = pa.Table.from_pandas(df[used], preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise DeepMovieError(_unconvertible(df, columns, name, exc)) from None
        return cls.from_arrow(
            table, user=user, item=item, rating=rating, timestamp=timestamp, scale=scale, name=name
        )

    @classmethod
    def from_path(
        cls,
        path: str | Path,
        *,
        sep: str | None = None,
        columns: dict[str, str] | None = None,
        header: bool | None = None,
        encoding: str = "utf-8",
        scale: tuple[float, float] | RatingScale | None = None,
        test_file: str | Path | None = None,
        item_docs: str | Path | None = None,
        item_docs_with_metadata: bool = False,
    ) -> Dataset:
        """:func:`load_dataset` with keyword options, so the three ways in sit side by side."""
        options = ReadOptions(sep, columns, header, encoding, _scale_of(scale, str(path)))
        return load_dataset(
            path,
            options=options,
            test_file=test_file,
            item_docs=item_docs,
            item_docs_with_metadata=item_docs_with_metadata,
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
    item_docs_with_metadata: bool = False,
) -> Dataset:
    """Resolve ``data`` and load it; with ``test_file``, its rows are kept apart as ``test_rows``; with
    ``item_docs``, items get their texts as documents (after the built ones: ``item_docs_with_metadata``)."""
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
    paths = [ratings_path] + ([regular_file(Path(test_file))] if test_file else [])
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
    items_with_text = None
    if item_docs is not None:
        if item_info is None:
            raise DeepMovieError(f"{item_docs}: item documents need item metadata, and {data} has none")
        items_with_text = item_info.load_documents(Path(item_docs), item_ids, item_docs_with_metadata)
        log.info("%s of %s items have text from %s", f"{items_with_text:,}", f"{len(item_ids):,}", item_docs)
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
        items_with_text,
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
    kind = path_kind(path)
    if kind == "folder":
        layout, ratings = detect_layout(path)
        return path, ratings, layout
    if kind == "file":
        return path.parent, path, Layout("generic", path.name)
    if kind == "other":
        regular_file(path)  # refuses it, naming what it is
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
        shutil.rmtree(tmp, ignore_errors=True)
        if not (folder / "meta.json").is_file():  # another process wrote it first: no loss
            log.warning("could not write the load cache %s: %s", folder, exc)


def _read_and_encode(paths: list[Path], options: ReadOptions):
    raws = [
        read_ratings(
            p, sep=options.sep, columns=options.columns, header=options.header, encoding=options.encoding
        )
        for p in paths
    ]
    if options.scale is not None:
        for raw in raws:
            _check_range(
                raw.ratings, options.scale, lambda row, r=raw: where(r.path, r.line_of(row)), FILE_SCALE_HINT
            )
    return _encode(raws)


def _encode(raws: list[RawRatings]):
    """Map raw ids to indices and keep one row per (user, item) within each part; a second part's rows
    come back as ``test_rows``. Empties ``raws``: the raw columns are no longer needed (peak memory)."""
    if len(raws) == 2 and (raws[0].users.dtype.kind in "iu") != (raws[1].users.dtype.kind in "iu"):
        raws[:] = [_as_text_ids(r) for r in raws]
    user_ids, users = IdMap.encode(_join([r.users for r in raws]))
    item_ids, items = IdMap.encode(_join([r.items for r in raws]))
    ratings = _join([r.ratings for r in raws])
    has_time = all(r.timestamps is not None for r in raws)
    timestamps = _join([r.timestamps for r in raws]) if has_time else None
    parts = [(len(r.ratings), r.path) for r in raws]
    raws.clear()
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


def _check_range(ratings: np.ndarray, scale: RatingScale, at: Callable[[int], str], fix: str) -> None:
    """Refuse ratings outside a declared scale; ``at`` places a row (file line or table row)."""
    bad = (ratings < scale.low) | (ratings > scale.high)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DeepMovieError(
            f"{at(row)}: rating {ratings[row]:g} is outside {scale.low:g}..{scale.high:g} "
            f"({int(bad.sum())} such row(s); {fix})"
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


def _roles(user: str, item: str, rating: str, timestamp: str | None) -> dict[str, str]:
    columns = {"user": user, "item": item, "rating": rating}
    return columns | ({"timestamp": timestamp} if timestamp is not None else {})


def _require_columns(present: list[str], columns: dict[str, str], name: str) -> None:
    """Refuse a missing or repeated column up front, listing what the table has (a typo is likely)."""
    for role, column in columns.items():
        if present.count(column) != 1:
            problem = "no" if column not in present else f"{present.count(column)} columns named"
            raise DeepMovieError(
                f"{name}: {problem} column {column!r} for the {role} (columns: {present}); "
                f"pass {role}=COLUMN to name it"
            )


def _at(name: str, column: str, row: int | None) -> str:
    return f"{name}: column {column!r}" + (f", row {row}" if row is not None else "")


def _scale_of(scale: tuple[float, float] | RatingScale | None, name: str) -> RatingScale | None:
    """A declared (LOW, HIGH) as the CLI's --rating-scale gives it: no rating grid assumed."""
    if scale is None or isinstance(scale, RatingScale):
        return scale
    low, high = (float(v) for v in scale)
    if not (np.isfinite([low, high]).all() and low < high):
        raise DeepMovieError(f"{name}: rating scale {low:g}..{high:g} is empty or not finite")
    return RatingScale(low, high, 0.0)


def _first(bad: np.ndarray) -> int:
    return int(np.flatnonzero(bad)[0])


def _table_column(table: pa.Table, column: str, role: str, name: str) -> np.ndarray:
    """One used column as the NumPy array a ratings file would give: ids as int64 or text, exactly
    (never through float), ratings as float32, timestamps as int64 seconds."""
    data = table.column(column)
    if data.null_count:
        row = _first(data.is_null().to_numpy(zero_copy_only=False))
        raise DeepMovieError(
            f"{_at(name, column, row)}: missing {role} value ({data.null_count:,} null(s) in the column)"
        )
    if pa.types.is_dictionary(data.type):  # pandas categoricals
        data = data.cast(data.type.value_type)
    kind = data.type
    if role in ("user", "item"):
        return id_values(data, role, lambda row: _at(name, column, row))
    if role == "rating":
        if pa.types.is_decimal(kind):
            data = data.cast(pa.float64())
        elif not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            texts = [str(v) for v in data.to_pylist()]
            row = next((i for i, text in enumerate(texts) if not _is_number(text)), 0)
            raise DeepMovieError(
                f"{_at(name, column, row)}: rating {texts[row]!r} is not a number "
                f"(the column holds {kind} values; ratings must be numeric)"
            )
        values = data.to_numpy()
        ratings = values.astype(np.float32)
        bad = ~np.isfinite(ratings)
        if bad.any():
            row = _first(bad)
            raise DeepMovieError(
                f"{_at(name, column, row)}: rating {values[row]} is not a finite 32-bit number "
                f"({int(bad.sum()):,} such row(s))"
            )
        return ratings
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return data.to_numpy().astype("datetime64[s]").astype(np.int64)
    if pa.types.is_integer(kind):
        return to_int64(data.to_numpy(), "timestamp", lambda row: _at(name, column, row))
    if pa.types.is_floating(kind):
        values = data.to_numpy()
        bad = ~np.isfinite(values) | (np.abs(values) >= 2.0**63)
        if bad.any():
            row = _first(bad)
            raise DeepMovieError(f"{_at(name, column, row)}: timestamp {values[row]} is not a usable time")
        return values.astype(np.int64)  # whole seconds, as for files
    raise DeepMovieError(
        f"{name}: column {column!r} holds {kind} values; timestamps must be numbers or datetimes"
    )


def _unconvertible(df: Any, columns: dict[str, str], name: str, error: Exception) -> str:
    """Place a column Arrow cannot convert (an object column mixing types): the first row whose type
    differs from the first value's (for ratings: the first value that is not a number)."""
    for role, column in columns.items():
        series = next(df[c] for c in df.columns if str(c) == column)
        try:
            pa.array(series, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            values = series.tolist()
            if role == "rating":
                row = next((i for i, v in enumerate(values) if not _is_real(v)), 0)
            else:
                row = next((i for i, v in enumerate(values) if type(v) is not type(values[0])), 0)
            return (
                f"{_at(name, column, row)}: {role} value {values[row]!r} ({type(values[row]).__name__}) "
                f"does not fit the column's other values; give the column one type ({error})"
            )
    return f"{name}: cannot convert the DataFrame to Arrow ({error})"


def _is_real(value: object) -> bool:
    numeric = isinstance(value, int | float | np.integer | np.floating)
    return numeric and not isinstance(value, bool | np.bool_)
