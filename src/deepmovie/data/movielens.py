"""MovieLens folder layouts: which file holds the ratings, how it is written, and its side files."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from deepmovie.data.interactions import IdMap, RatingScale
from deepmovie.data.side import ItemInfo, UserInfo, age_group
from deepmovie.errors import DeepMovieError, where

WHOLE_STARS = RatingScale(1.0, 5.0, 1.0)
HALF_STARS = RatingScale(0.5, 5.0, 0.5)
GENOME_TOP_TAGS = 10


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
        rows = _split_lines(folder / "u.user", "|", 5)
        users = _users(rows, user_ids, age=1, gender=2, occupation=3, zip_code=4, exact_age=True)
    elif (folder / "users.dat").is_file():
        rows = _split_lines(folder / "users.dat", "::", 5)
        users = _users(rows, user_ids, age=2, gender=1, occupation=3, zip_code=4, exact_age=False)
    return items, users


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")  # ML-100K and ML-1M side files are ISO-8859-1


def _split_lines(path: Path, sep: str, fields: int) -> list[list[str]]:
    rows = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(sep, fields - 1) if sep == "::" else line.split(sep)
        if len(parts) < fields:
            raise DeepMovieError(f"{where(path, number)}: expected {fields} fields separated by {sep!r}")
        rows.append(parts)
    return rows


def _csv_rows(path: Path, fields: int) -> list[list[str]]:
    rows = list(csv.reader(_read_text(path).splitlines()))[1:]
    for number, row in enumerate(rows, start=2):
        if len(row) < fields:
            raise DeepMovieError(f"{where(path, number)}: expected {fields} comma-separated fields")
    return rows


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
        table = pacsv.read_csv(
            folder / "tags.csv",
            convert_options=pacsv.ConvertOptions(
                include_columns=["movieId", "tag"], column_types={"movieId": pa.string(), "tag": pa.string()}
            ),
        )
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
    tag_names = pacsv.read_csv(names)
    lookup = dict(zip(tag_names["tagId"].to_pylist(), tag_names["tag"].to_pylist(), strict=True))
    table = pacsv.read_csv(scores)
    movie = table["movieId"].to_numpy()
    tag = table["tagId"].to_numpy()
    relevance = table["relevance"].to_numpy()
    order = np.lexsort((-relevance, movie))
    movie, tag = movie[order], tag[order]
    starts = np.flatnonzero(np.r_[True, movie[1:] != movie[:-1]])
    ends = np.r_[starts[1:], len(movie)]
    top: dict[str, list[str]] = {}
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        chunk = tag[start : min(start + GENOME_TOP_TAGS, end)]
        top[str(movie[start])] = [lookup[t] for t in chunk.tolist()]
    return top
