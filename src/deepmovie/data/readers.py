"""Read a ratings file (CSV, TSV, ``::``, Parquet) into raw columns, with errors that name the line.

Parsing is PyArrow's multi-threaded CSV reader; Python only looks at the first line (to detect the
delimiter and header) and, when PyArrow rejects the file, rescans it to name the offending line. Raw ids
are kept exactly as written: integers as int64, anything else as text, never through float.
"""

from __future__ import annotations

import codecs
import csv
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from tqdm.auto import tqdm

from deepmovie.errors import DeepMovieError, where
from deepmovie.files import regular_file

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
MAX_LINE = 1 << 16  # characters: a row of ratings is a few short fields; a longer line is not one
# What a file that is not text starts with: refused by name rather than parsed as garbage.
MAGIC = {
    b"\x1f\x8b": "gzip archive",
    b"PK\x03\x04": "zip archive",
    b"BZh": "bzip2 archive",
    b"\xfd7zXZ\x00": "xz archive",
    b"\x28\xb5\x2f\xfd": "zstd archive",
    b"PAR1": "Parquet file",
}
BYTE_ORDER_MARKS = (  # UTF-32's first: its little-endian mark begins with UTF-16's
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# An integer as a CSV file may write it in a column of numbers ("7", "+7", "-7.0"); group 1 is what
# Arrow's int64 cast reads. One pattern for Arrow (RE2) and Python.
WHOLE_NUMBER = r"^[ \t]*\+?(-?[0-9]+)(?:\.0*)?[ \t]*$"


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


def _text_encoding(path: Path, encoding: str) -> str:
    """The encoding to read ``path`` with: ``encoding`` (utf-8-sig for UTF-8 that starts with a
    byte-order mark). An unknown encoding, an archive or a Parquet file, and UTF-16 or UTF-32 text
    read as another encoding are refused naming the file, rather than parsed as garbage."""
    try:
        family = codecs.lookup(encoding).name
        "".encode(encoding)  # refuses codecs that are not text encodings (base64, rot13)
    except LookupError:
        raise DeepMovieError(
            f"{path}: {encoding!r} is not a text encoding Python knows (e.g. utf-8, latin-1, utf-16)"
        ) from None
    with open(path, "rb") as handle:
        start = handle.read(8)
    kind = next((kind for magic, kind in MAGIC.items() if start.startswith(magic)), None)
    if kind is not None:
        what = "name it .parquet" if kind == "Parquet file" else "unpack it first"
        raise DeepMovieError(f"{path}: a {kind}, not a text file of ratings ({what})")
    for mark, name in BYTE_ORDER_MARKS:
        if start.startswith(mark) and not family.startswith(name):
            raise DeepMovieError(
                f"{path}: {name.upper()} text (it starts with a byte-order mark); pass --encoding {name}"
            )
    return "utf-8-sig" if family == "utf-8" and start.startswith(codecs.BOM_UTF8) else encoding


def _first_line(path: Path, encoding: str) -> tuple[str, int]:
    """The first non-blank line, and how many blank lines come before it; a line too long to be a row,
    or one with NUL characters (binary data), is refused naming it."""
    try:
        with open(path, encoding=encoding, errors="replace") as handle:
            for number in itertools.count(1):
                line = handle.readline(MAX_LINE + 1)
                if not line:
                    break
                if len(line) > MAX_LINE:
                    raise DeepMovieError(
                        f"{where(path, number)}: longer than {MAX_LINE:,} characters, so not a row of "
                        "ratings (binary data, or a file without line breaks?)"
                    )
                if "\0" in line:
                    raise DeepMovieError(
                        f"{where(path, number)}: NUL characters: binary data, or UTF-16 text without a "
                        "byte-order mark (then pass --encoding utf-16-le)"
                    )
                if line.strip():
                    return line.rstrip("\r\n"), number - 1
    except UnicodeError as exc:  # a decoder that cannot start (UTF-16 without a byte-order mark)
        raise DeepMovieError(f"{where(path, 1)}: not valid {encoding} text ({exc})") from None
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
                positions[role] = _position(wanted, role, len(names), path)
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


def _position(text: str, role: str, width: int, path: Path) -> int:
    """A column given by its position (``--columns user=0``), which the first line must have."""
    if not text.isdigit():
        raise DeepMovieError(
            f"{where(path, 1)}: column {text!r} for {role} is a name, and the file has no header: "
            "give its position (0 is the first)"
        )
    if int(text) >= width:
        raise DeepMovieError(
            f"{where(path, 1)}: column {text} for {role} is past the {width} field(s) of the first line"
        )
    return int(text)


def read_ratings(
    path: str | Path,
    *,
    sep: str | None = None,
    columns: dict[str, str] | None = None,
    header: bool | None = None,
    encoding: str = "utf-8",
) -> RawRatings:
    """Read user, item, rating and (optional) timestamp columns from a ratings file."""
    path = regular_file(Path(path))
    if path.stat().st_size == 0:
        raise DeepMovieError(f"{path}: the file is empty (no rating rows)")
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return _read_parquet(path, columns)
    if sep is not None and not (sep == "::" or (len(sep) == 1 and sep not in '"\r\n')):
        raise DeepMovieError(
            f"{path}: delimiter {sep!r}: give one character (not a quote or a line break), or '::'"
        )
    encoding = _text_encoding(path, encoding)
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
    else:  # the given positions, else user, item, rating and (where there is one) timestamp in order
        positions = {role: i for i, role in enumerate(ROLES) if i < len(fields)}
        positions |= {role: _position(p, role, len(fields), path) for role, p in (columns or {}).items()}

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
    chunks = None
    for timestamp_type in (pa.int64(), pa.float64()):  # integer seconds, else fractional ones
        if "timestamp" in wanted:
            types[wanted["timestamp"]] = timestamp_type
        convert = pacsv.ConvertOptions(
            include_columns=list(wanted.values()), column_types=types, strings_can_be_null=False
        )
        try:
            chunks = _read_csv_chunks(path, dict(read), parse, convert)
            break
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            error = exc
    if chunks is not None and any(pa.types.is_binary(t) for chunk in chunks for t in chunk.schema.types):
        chunks, error = None, f"not valid {encoding} text"  # PyArrow reads such a column as bytes
    if chunks is None:
        raise DeepMovieError(
            _diagnose(path, sep, len(fields), positions, skipped, encoding) or f"{path}: {error}"
        ) from None
    ids = {role: wanted[role] for role in ("user", "item")}
    table = _join_exactly(path, chunks, ids, read, parse, skipped)
    return _columns_to_raw(table, wanted, path, skipped)


def _read_csv_chunks(
    path: Path, read: dict, parse: pacsv.ParseOptions, convert: pacsv.ConvertOptions
) -> list[pa.Table]:
    """Parse the file in line-aligned chunks with PyArrow's multi-threaded reader: full speed, and a
    progress bar that advances by the real bytes parsed. Each chunk's column types are its own."""
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
    one_byte_nul = "a\0\n".encode(read["encoding"]).endswith(b"a\0\n")  # UTF-16 text is full of NULs
    with open(path, "rb") as handle, bar:
        while data := handle.read(CHUNK):
            data += handle.readline()  # finish the last line of the chunk
            if one_byte_nul and (nul := data.find(b"\0")) >= 0:
                line = _line_at(path, handle.tell() - len(data) + nul)
                raise DeepMovieError(f"{where(path, line)}: a NUL character: binary data, not text")
            options = pacsv.ReadOptions(skip_rows=skip if not tables else 0, **read)
            tables.append(
                pacsv.read_csv(
                    pa.BufferReader(data), read_options=options, parse_options=parse, convert_options=convert
                )
            )
            bar.update(len(data))
    return tables


def _join_exactly(
    path: Path,
    chunks: list[pa.Table],
    ids: dict[str, str],
    read: dict,
    parse: pacsv.ParseOptions,
    skipped: int,
) -> pa.Table:
    """The chunks as one table whose id columns hold the ids exactly as the file writes them.

    Arrow reads a column of integers as int64 and a column with any other text as strings: both exact.
    But it reads a column of numbers as float64 when one is past int64 or written ``7.0`` (and float64
    merges 2**53 and 2**53 + 1), and the chunks of a big file may each infer their own type. Such a
    column is read again as text (only then: it costs a second parse): kept as text where any chunk
    holds text, as a file read in one piece would be, else parsed as integers (:func:`_whole_numbers`).
    """
    kinds = {role: {chunk.schema.field(name).type for chunk in chunks} for role, name in ids.items()}
    again = [role for role in ids if kinds[role] not in ({pa.int64()}, {pa.string()})]
    table = pa.concat_tables([chunk.drop_columns([ids[role] for role in again]) for chunk in chunks])
    for role in again:
        name, numeric = ids[role], all(_is_numeric(kind) for kind in kinds[role])
        # Empty and NA fields: null in a column of numbers (a missing id), text in a column of text.
        convert = pacsv.ConvertOptions(
            include_columns=[name], column_types={name: pa.string()}, strings_can_be_null=numeric
        )
        text = pa.concat_tables(_read_csv_chunks(path, dict(read), parse, convert)).column(name)
        if numeric:
            text = _whole_numbers(text, role, lambda row: where(path, _line(path, row, skipped)))
        table = table.append_column(name, text)
    return table


def _is_numeric(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind)


def _whole_numbers(text: pa.ChunkedArray, role: str, at: Callable[[int], str]) -> pa.ChunkedArray:
    """A column of numbers, parsed from its text as int64 ids (nulls stay null): each must be an
    integer that int64 holds, written in digits; the first that is not is refused, placed by ``at``."""
    try:
        return pc.cast(pc.replace_substring_regex(text, WHOLE_NUMBER, r"\1"), pa.int64())
    except pa.ArrowInvalid:  # error path only: find the first culprit
        values = itertools.chain.from_iterable(chunk.to_pylist() for chunk in text.chunks)
        row, value = next((r, v) for r, v in enumerate(values) if v is not None and not _is_int64(v))
    problem = "does not fit int64" if re.match(WHOLE_NUMBER, value) else "is not written as a whole number"
    raise DeepMovieError(f"{at(row)}: {role} id {value.strip()} {problem}; ids are 64-bit integers or text")


def _is_int64(text: str) -> bool:
    match = re.match(WHOLE_NUMBER, text)
    return match is not None and -(2**63) <= int(match[1]) < 2**63


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
        if role in ("user", "item"):
            return id_values(col, role, lambda row: where(path, _line(path, row, header_lines)))
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
        unusable = ~(np.isfinite(ts) & (np.abs(ts) < 2.0**63)) if ts.dtype.kind == "f" else None
        if unusable is not None and unusable.any():  # int64 seconds hold neither these nor NaN
            row = int(np.flatnonzero(unusable)[0])
            raise DeepMovieError(
                f"{where(path, _line(path, row, header_lines))}: timestamp is {ts[row]:g}, not a usable time"
            )
        timestamps = ts.astype(np.int64, copy=False) if ts.dtype.kind in "fiu" else None
    users, items = column("user"), column("item")
    return RawRatings(users, items, ratings.astype(np.float32, copy=False), timestamps, path, header_lines)


def id_values(data: pa.ChunkedArray, role: str, at: Callable[[int | None], str]) -> np.ndarray:
    """A column of ids (no nulls) as NumPy, exactly: integers as int64, text as str, and floats only
    while they are whole numbers below 2**53 (past that a float has already lost the id: refuse rather
    than guess which one was meant). ``at`` places a row, or with None the column."""
    kind = data.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return data.to_numpy(zero_copy_only=False).astype(str)
    if pa.types.is_integer(kind):
        return to_int64(data.to_numpy(), f"{role} id", at)
    if pa.types.is_floating(kind):
        values = data.to_numpy()
        bad = ~np.isfinite(values) | (values != np.round(values)) | (np.abs(values) >= 2.0**53)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DeepMovieError(
                f"{at(row)}: {role} id {float(values[row])!r} is not a whole number below 2**53, so a float "
                "column cannot hold it exactly; pass ids as integers or strings"
            )
        return values.astype(np.int64)
    raise DeepMovieError(f"{at(None)}: {role} ids are {kind} values; they must be integers or strings")


def to_int64(values: np.ndarray, what: str, at: Callable[[int | None], str]) -> np.ndarray:
    """Integers as int64; a uint64 past 2**63 - 1 is refused rather than wrapped to a negative number."""
    if values.dtype == np.uint64:
        bad = values > np.iinfo(np.int64).max
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DeepMovieError(f"{at(row)}: {what} {values[row]} does not fit int64")
    return values.astype(np.int64, copy=False)


def _line_at(path: Path, offset: int) -> int:
    """The line of the byte at ``offset`` (error path only: a scan, a chunk at a time)."""
    line = 1
    with open(path, "rb") as handle:
        while offset > 0 and (data := handle.read(min(offset, CHUNK))):
            line += data.count(b"\n")
            offset -= len(data)
    return line


def _line(path: Path, row: int | None, header_lines: int) -> int | None:
    """The line of data row ``row`` (error path only: a scan, since PyArrow skips empty lines)."""
    if header_lines < 0 or row is None:
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
        for number, data in enumerate(iter(lambda: handle.readline(MAX_LINE + 1), b""), start=1):
            if len(data) > MAX_LINE:  # beyond PyArrow's block, or the csv module's field limit
                return (
                    f"{where(path, number)}: longer than {MAX_LINE:,} bytes, so not a row of ratings "
                    "(binary data, or a wrong delimiter?)"
                )
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
