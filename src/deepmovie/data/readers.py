"""Read a ratings file (CSV, TSV, ``::``, Parquet) into raw columns, with errors that name the line.

Parsing is PyArrow's multi-threaded CSV reader; Python only looks at the first line (to detect the
delimiter and header) and, when PyArrow rejects the file, rescans it to name the offending line.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from tqdm.auto import tqdm

from deepmovie.errors import DeepMovieError, where

ROLES = ("user", "item", "rating", "timestamp")
ALIASES = {
    "user": ("user", "userid", "user_id", "uid", "users", "customer_id", "reviewer_id"),
    "item": ("item", "itemid", "item_id", "movieid", "movie_id", "movie", "iid", "items", "asin"),
    "rating": ("rating", "ratings", "score", "stars", "value", "overall"),
    "timestamp": ("timestamp", "time", "ts", "date", "datetime", "unix_time", "unixreviewtime"),
}
DELIMITERS = ("::", "\t", ",", ";", "|")
PARQUET_SUFFIXES = (".parquet", ".pq")
CHUNK = 1 << 26  # bytes handed to PyArrow at a time (and per progress step)
BLOCK = 1 << 22  # PyArrow's block: its unit of parallel parsing within a chunk
PROGRESS_MIN_BYTES = 64 << 20  # files smaller than this load too fast to need a bar


@dataclass
class RawRatings:
    """Rating columns as read, raw ids not yet mapped to indices."""

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    timestamps: np.ndarray | None
    path: Path
    header_lines: int  # lines before the first row; -1 for Parquet, which has no lines

    def line_of(self, row: int) -> int | None:
        return _line(self.path, int(row), self.header_lines)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _first_line(path: Path, encoding: str) -> tuple[str, int]:
    """The first non-blank line, and how many blank lines come before it."""
    with open(path, encoding=encoding, errors="replace") as handle:
        for number, line in enumerate(handle):
            if line.strip():
                return line.rstrip("\r\n"), number
    raise DeepMovieError(f"{path}: the file is empty (no rating rows)")


def sniff_delimiter(line: str, path: Path) -> str:
    """The delimiter that splits the first line into at least three fields."""
    for sep in DELIMITERS:
        if len(line.split(sep)) >= 3:
            return sep
    raise DeepMovieError(
        f"{where(path, 1)}: cannot split {line[:80]!r} into user, item and rating columns "
        "with ',', tab, '::', ';' or '|' (wrong delimiter? pass --sep)"
    )


def _resolve_columns(names: list[str], columns: dict[str, str] | None, path: Path) -> dict[str, int]:
    """Map each role to a column position, from user-given names or the usual aliases."""
    lowered = [n.strip().strip('"').lower() for n in names]
    positions: dict[str, int] = {}
    for role in ROLES:
        wanted = (columns or {}).get(role)
        if wanted is not None:
            if wanted.isdigit():
                positions[role] = int(wanted)
            elif wanted.lower() in lowered:
                positions[role] = lowered.index(wanted.lower())
            else:
                raise DeepMovieError(
                    f"{where(path, 1)}: no column named {wanted!r} for {role} (header: {names})"
                )
            continue
        match = next((i for i, n in enumerate(lowered) if n in ALIASES[role]), None)
        if match is not None:
            positions[role] = match
    missing = [r for r in ("user", "item", "rating") if r not in positions]
    if missing:
        raise DeepMovieError(
            f"{where(path, 1)}: cannot tell which header column is the {', '.join(missing)} "
            f"(header: {names}); name them with --columns user=...,item=...,rating=..."
        )
    return positions


def read_ratings(
    path: str | Path,
    *,
    sep: str | None = None,
    columns: dict[str, str] | None = None,
    header: bool | None = None,
    encoding: str = "utf-8",
) -> RawRatings:
    """Read user, item, rating and (optional) timestamp columns from a ratings file."""
    path = Path(path)
    if not path.is_file():
        raise DeepMovieError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DeepMovieError(f"{path}: the file is empty (no rating rows)")
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return _read_parquet(path, columns)

    first, blank_lines = _first_line(path, encoding)
    sep = sep or sniff_delimiter(first, path)
    fields = first.split(sep)
    if len(fields) < 3:
        raise DeepMovieError(
            f"{where(path, 1)}: {len(fields)} field(s) with delimiter {sep!r}; need user, item, "
            "rating (wrong delimiter?)"
        )
    if header is None:
        header = columns is not None and not all(v.isdigit() for v in columns.values())
        header = header or not _is_number(fields[2].strip().strip('"'))
    if header:
        positions = _resolve_columns(fields, columns, path)
    else:
        positions = {role: int((columns or {}).get(role, i)) for i, role in enumerate(ROLES)}
        if "timestamp" not in (columns or {}) and len(fields) < 4:
            positions.pop("timestamp")
    positions = {r: p for r, p in positions.items() if p < len(fields)}

    # PyArrow takes one-character delimiters: read "a::b" as "a", "", "b" and skip the blanks.
    physical = 2 if sep == "::" else 1
    arrow_sep = ":" if sep == "::" else sep
    names = [f"c{i}" for i in range(len(fields) * physical - (physical - 1))]
    wanted = {role: names[p * physical] for role, p in positions.items()}
    # Parse straight into the final dtypes: every later copy of 20M rows costs a second here.
    types = {wanted["rating"]: pa.float32()}
    skipped = blank_lines + int(header)  # lines before the first row: PyArrow's skip_rows counts blank ones
    read = {"column_names": names, "skip_rows": skipped, "encoding": encoding, "block_size": BLOCK}
    parse = pacsv.ParseOptions(delimiter=arrow_sep, quote_char='"' if sep == "," else False)
    table = None
    for timestamp_type in (pa.int64(), pa.float64()):  # integer seconds, else fractional ones
        if "timestamp" in wanted:
            types[wanted["timestamp"]] = timestamp_type
        convert = pacsv.ConvertOptions(
            include_columns=list(wanted.values()), column_types=types, strings_can_be_null=False
        )
        try:
            table = _read_csv_chunks(path, dict(read), parse, convert)
            break
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            error = exc
    if table is not None and any(pa.types.is_binary(t) for t in table.schema.types):
        table, error = None, f"not valid {encoding} text"  # PyArrow reads such a column as bytes
    if table is None:
        raise DeepMovieError(
            _diagnose(path, sep, len(fields), positions, skipped, encoding) or f"{path}: {error}"
        ) from None
    return _columns_to_raw(table, wanted, path, skipped)


def _read_csv_chunks(
    path: Path, read: dict, parse: pacsv.ParseOptions, convert: pacsv.ConvertOptions
) -> pa.Table:
    """Parse the file in line-aligned chunks with PyArrow's multi-threaded reader: full speed, and a
    progress bar that advances by the real bytes parsed."""
    size = path.stat().st_size
    bar = tqdm(
        total=size,
        unit="B",
        unit_scale=True,
        desc=f"reading {path.name}",
        leave=False,
        disable=True if size < PROGRESS_MIN_BYTES else None,
    )
    tables = []
    skip = read.pop("skip_rows")
    with open(path, "rb") as handle, bar:
        while data := handle.read(CHUNK):
            data += handle.readline()  # finish the last line of the chunk
            options = pacsv.ReadOptions(skip_rows=skip if not tables else 0, **read)
            tables.append(
                pacsv.read_csv(
                    pa.BufferReader(data), read_options=options, parse_options=parse, convert_options=convert
                )
            )
            bar.update(len(data))
    return pa.concat_tables(_same_types(tables))


def _same_types(tables: list[pa.Table]) -> list[pa.Table]:
    """Ids read as numbers in one chunk and as text in another become text in all chunks, as they
    would be in a file read in one piece."""
    first = tables[0].schema
    mixed = {f.name for t in tables[1:] for f in t.schema if f.type != first.field(f.name).type}
    if not mixed:
        return tables
    schema = pa.schema([pa.field(f.name, pa.string()) if f.name in mixed else f for f in first])
    return [t.cast(schema) for t in tables]


def _read_parquet(path: Path, columns: dict[str, str] | None) -> RawRatings:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DeepMovieError(f"{path}: not a readable Parquet file ({exc})") from None
    positions = _resolve_columns(table.column_names, columns, path)
    wanted = {role: table.column_names[p] for role, p in positions.items()}
    return _columns_to_raw(table, wanted, path, header_lines=-1)


def _columns_to_raw(table: pa.Table, wanted: dict[str, str], path: Path, header_lines: int) -> RawRatings:
    if table.num_rows == 0:
        raise DeepMovieError(f"{path}: the file is empty (no rating rows)")

    def column(role: str) -> np.ndarray:
        col = table.column(wanted[role])
        if col.null_count:
            row = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            raise DeepMovieError(f"{where(path, _line(path, row, header_lines))}: missing {role} value")
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        if pa.types.is_floating(col.type) and role in ("user", "item"):
            values = col.to_numpy()
            bad = ~np.isfinite(values) | (values != np.round(values))
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                at = where(path, _line(path, row, header_lines))
                raise DeepMovieError(f"{at}: {role} id {values[row]:g} is not a whole number")
            return values.astype(np.int64)
        return col.to_numpy()

    ratings = column("rating")
    if ratings.dtype.kind not in "fiu":
        raise DeepMovieError(f"{path}: rating column {wanted['rating']!r} is not numeric")
    bad = ~np.isfinite(ratings)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DeepMovieError(
            f"{where(path, _line(path, row, header_lines))}: rating is {ratings[row]} "
            f"({int(bad.sum())} non-finite rating(s) in the file)"
        )
    timestamps = None
    if "timestamp" in wanted:
        ts = column("timestamp")
        if ts.dtype.kind == "f" and not np.isfinite(ts).all():
            row = int(np.flatnonzero(~np.isfinite(ts))[0])
            raise DeepMovieError(f"{where(path, _line(path, row, header_lines))}: timestamp is {ts[row]}")
        timestamps = ts.astype(np.int64, copy=False) if ts.dtype.kind in "fiu" else None
    users, items = column("user"), column("item")
    if users.dtype.kind == "O":
        users = users.astype(str)
    if items.dtype.kind == "O":
        items = items.astype(str)
    return RawRatings(users, items, ratings.astype(np.float32, copy=False), timestamps, path, header_lines)


def _line(path: Path, row: int, header_lines: int) -> int | None:
    """The line of data row ``row`` (error path only: a scan, since PyArrow skips empty lines)."""
    if header_lines < 0:
        return None
    with open(path, "rb") as handle:
        for number, data in enumerate(handle, start=1):
            if number > header_lines and data.rstrip(b"\r\n"):
                if row == 0:
                    return number
                row -= 1
    return None


def _diagnose(
    path: Path, sep: str, width: int, positions: dict[str, int], header_lines: int, encoding: str
) -> str | None:
    """Find the first line PyArrow could not read and say what is wrong with it (every line must
    have the first line's ``width`` fields)."""
    with open(path, "rb") as handle:
        for number, data in enumerate(handle, start=1):
            try:  # line by line, so that the error names the line the bad byte is on
                line = data.decode(encoding).rstrip("\r\n")
            except UnicodeDecodeError as exc:
                return (
                    f"{where(path, number)}: not valid {encoding} text ({exc.reason}); try --encoding latin-1"
                )
            if number <= header_lines or not line:
                continue
            fields = next(csv.reader([line], delimiter=sep)) if sep == "," else line.split(sep)
            if len(fields) != width:
                return (
                    f"{where(path, number)}: {len(fields)} field(s), expected {width} "
                    f"separated by {sep!r}: {line[:80]!r}"
                )
            for role in ("rating", "timestamp"):
                if role in positions and not _is_number(fields[positions[role]].strip()):
                    return (
                        f"{where(path, number)}: {role} {fields[positions[role]].strip()!r} is not a number"
                    )
    return None
