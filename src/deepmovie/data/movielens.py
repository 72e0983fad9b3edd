"""MovieLens folder layouts: which file holds the ratings, how it is written, and its side files."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from deepmovie.data.interactions import IdMap, RatingScale
from deepmovie.data.side import ItemInfo, UserInfo, age_group, read_text
from deepmovie.errors import DeepMovieError, where
from deepmovie.files import regular_file

WHOLE_STARS = RatingScale(1.0, 5.0, 1.0)
HALF_STARS = RatingScale(0.5, 5.0, 0.5)
GENOME_TOP_TAGS = 10
ARROW_ROW = re.compile(r"Row #(\d+): ")  # how PyArrow's single-threaded reader places a bad row


@dataclass(frozen=True)
class Layout:
    """How one MovieLens release writes its ratings file."""

    name: str
    ratings_file: str
    sep: str | None = None
    header: bool | None = None
    encoding: str = "utf-8"
    scale: RatingScale | None = None


# Tried in order; the first whose ratings file exists wins.
LAYOUTS = (
    Layout("ml-100k", "u.data", "\t", False, "latin-1", WHOLE_STARS),
    Layout("ml-1m/10m", "ratings.dat", "::", False, "latin-1", None),
    Layout("ml-csv", "ratings.csv"),
    Layout("generic", "ratings.parquet"),
    Layout("generic", "ratings.tsv"),
    Layout("generic", "ratings.txt"),
)


def detect_layout(folder: Path) -> tuple[Layout, Path]:
    for layout in LAYOUTS:
        path = folder / layout.ratings_file
        if path.is_file():
            if layout.name == "ml-1m/10m":
                # ML-1M rates in whole stars; ML-10M in half stars and ships tags.dat.
                scale = HALF_STARS if (folder / "tags.dat").is_file() else WHOLE_STARS
                name = "ml-10m" if (folder / "tags.dat").is_file() else "ml-1m"
                layout = Layout(name, layout.ratings_file, "::", False, "latin-1", scale)
            elif layout.name == "ml-csv" and (folder / "movies.csv").is_file():
                layout = Layout("ml-latest", "ratings.csv", scale=HALF_STARS)
            return layout, path
    names = ", ".join(sorted({layout.ratings_file for layout in LAYOUTS}))
    raise DeepMovieError(f"{folder}: no ratings file found (looked for {names})")


def load_side_info(folder: Path, item_ids: IdMap, user_ids: IdMap) -> tuple[ItemInfo | None, UserInfo | None]:
    """Item metadata and user features from whichever MovieLens side files the folder has."""
    items = users = None
    if (folder / "u.item").is_file():
        items = _items_100k(folder, item_ids)
    elif (folder / "movies.dat").is_file():
        items = _items_from_rows(
            _split_lines(folder / "movies.dat", "::", 3), item_ids, _tags_dat(folder / "tags.dat")
        )
    elif (folder / "movies.csv").is_file():
        rows = _csv_rows(folder / "movies.csv", 3)
        items = _items_from_rows(rows, item_ids, _tags_csv(folder))
    if (folder / "u.user").is_file():
        rows = _split_lines(folder / "u.user", "|", 5, whole=1)
        users = _users(rows, user_ids, age=1, gender=2, occupation=3, zip_code=4, exact_age=True)
    elif (folder / "users.dat").is_file():
        rows = _split_lines(folder / "users.dat", "::", 5)
        users = _users(rows, user_ids, age=2, gender=1, occupation=3, zip_code=4, exact_age=False)
    return items, users


def _split_lines(path: Path, sep: str, fields: int, whole: int | None = None) -> list[list[str]]:
    """The rows of a delimited side file, each with at least ``fields`` fields (and field ``whole`` an
    integer, where given)."""
    rows = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(sep, fields - 1) if sep == "::" else line.split(sep)
        if len(parts) < fields:
            raise DeepMovieError(f"{where(path, number)}: expected {fields} fields separated by {sep!r}")
        if whole is not None and not parts[whole].strip().isdigit():
            problem = f"field {whole + 1} {parts[whole]!r} is not a whole number"
            raise DeepMovieError(f"{where(path, number)}: {problem}")
        rows.append(parts)
    return rows


def _csv_rows(path: Path, fields: int) -> list[list[str]]:
    """The rows after the header of a CSV side file, each with at least ``fields`` fields."""
    reader = csv.reader(read_text(path).splitlines())
    rows = []
    try:
        for row in reader:
            if reader.line_num > 1 and len(row) < fields:
                problem = f"expected {fields} comma-separated fields"
                raise DeepMovieError(f"{where(path, reader.line_num)}: {problem}")
            rows.append(row)
    except csv.Error as exc:  # a field past the csv module's limit (131,072 characters)
        raise DeepMovieError(f"{where(path, reader.line_num)}: {exc}") from None
    return rows[1:]


def _items_from_rows(rows: list[list[str]], item_ids: IdMap, tags: dict) -> ItemInfo:
    raw = np.array([r[0].strip() for r in rows])
    titles = [r[1].strip() for r in rows]
    genres = [[g for g in r[2].strip().split("|") if g and g != "(no genres listed)"] for r in rows]
    return ItemInfo.build(item_ids, raw, titles, genres, tags=tags)


def _items_100k(folder: Path, item_ids: IdMap) -> ItemInfo:
    genre_rows = _split_lines(folder / "u.genre", "|", 2) if (folder / "u.genre").is_file() else []
    names = [r[0] for r in genre_rows]
    rows = _split_lines(folder / "u.item", "|", 5 + len(names))
    raw = np.array([r[0] for r in rows])
    titles = [r[1] for r in rows]
    years = np.array([int(r[2][-4:]) if r[2][-4:].isdigit() else 0 for r in rows], dtype=np.int16)
    flags = [r[5 : 5 + len(names)] for r in rows]
    genres = [
        [n for n, f in zip(names, fl, strict=True) if f.strip() == "1" and n != "unknown"] for fl in flags
    ]
    return ItemInfo.build(item_ids, raw, titles, genres, years, [n for n in names if n != "unknown"])


def _users(
    rows: list[list[str]],
    user_ids: IdMap,
    *,
    age: int,
    gender: int,
    occupation: int,
    zip_code: int,
    exact_age: bool,
) -> UserInfo:
    raw = np.array([r[0].strip() for r in rows])
    ages = [age_group(int(r[age])) if exact_age else r[age].strip() for r in rows]
    columns = {
        "gender": [r[gender].strip() for r in rows],
        "age": ages,
        "occupation": [r[occupation].strip() for r in rows],
        "zip_prefix": [r[zip_code].strip()[:2] for r in rows],
    }
    return UserInfo.build(user_ids, raw, columns)


def _tags_dat(path: Path) -> dict[str, list[str]]:
    if not path.is_file():
        return {}
    return _group_tags((r[1], r[2]) for r in _split_lines(path, "::", 4))


def _tags_csv(folder: Path) -> dict[str, list[str]]:
    tags: dict[str, list[str]] = {}
    if (folder / "tags.csv").is_file():
        table = _side_csv(folder / "tags.csv", {"movieId": pa.string(), "tag": pa.string()})
        tags = _group_tags(zip(table["movieId"].to_pylist(), table["tag"].to_pylist(), strict=True))
    genome = _genome_top_tags(folder)
    for item, words in genome.items():
        tags.setdefault(item, [])
        tags[item] += [w for w in words if w not in tags[item]]
    return tags


def _group_tags(pairs) -> dict[str, list[str]]:
    """Distinct tags per item (case-folded), in order of first use."""
    grouped: dict[str, dict[str, None]] = {}
    for item, tag in pairs:
        if tag:
            grouped.setdefault(str(item).strip(), {})[str(tag).strip().lower()] = None
    return {item: list(words) for item, words in grouped.items()}


def _genome_top_tags(folder: Path) -> dict[str, list[str]]:
    """The most relevant genome tags of each movie, where the release has the tag genome."""
    scores, names = folder / "genome-scores.csv", folder / "genome-tags.csv"
    if not (scores.is_file() and names.is_file()):
        return {}
    tag_names = _side_csv(names, {"tagId": pa.int64(), "tag": pa.string()})
    lookup = dict(zip(tag_names["tagId"].to_pylist(), tag_names["tag"].to_pylist(), strict=True))
    table = _side_csv(scores, {"movieId": pa.int64(), "tagId": pa.int64(), "relevance": pa.float64()})
    movie = table["movieId"].to_numpy()
    tag = table["tagId"].to_numpy()
    relevance = table["relevance"].to_numpy()
    unknown = np.setdiff1d(tag, np.fromiter(lookup, dtype=np.int64, count=len(lookup)))
    if len(unknown):
        raise DeepMovieError(f"{scores}: tag {unknown[0]} is not in {names.name}")
    order = np.lexsort((-relevance, movie))
    movie, tag = movie[order], tag[order]
    starts = np.flatnonzero(np.r_[True, movie[1:] != movie[:-1]])
    ends = np.r_[starts[1:], len(movie)]
    top: dict[str, list[str]] = {}
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        chunk = tag[start : min(start + GENOME_TOP_TAGS, end)]
        top[str(movie[start])] = [lookup[t] for t in chunk.tolist()]
    return top


def _side_csv(path: Path, columns: dict[str, pa.DataType]) -> pa.Table:
    """``columns`` of a CSV side file (tags, the tag genome), typed; a ragged row, a missing column or
    a value of another type is refused naming the file, and the line where PyArrow tells it."""
    convert = pacsv.ConvertOptions(include_columns=list(columns), column_types=columns)
    try:
        return pacsv.read_csv(regular_file(path), convert_options=convert)
    except (pa.ArrowInvalid, pa.ArrowKeyError) as exc:
        error = exc
    try:  # error path only: again on one thread, whose errors number the rows
        pacsv.read_csv(path, read_options=pacsv.ReadOptions(use_threads=False), convert_options=convert)
    except (pa.ArrowInvalid, pa.ArrowKeyError) as exc:
        error = exc
    message = str(error).splitlines()[0]
    row = ARROW_ROW.search(message)
    line = int(row[1]) if row else None
    raise DeepMovieError(f"{where(path, line)}: {ARROW_ROW.sub('', message)}") from None
