"""Side information in one model-ready form, aligned to the contiguous item and user indices."""

from __future__ import annotations

import codecs
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deepmovie.data.interactions import IdMap
from deepmovie.errors import DeepMovieError, where
from deepmovie.files import regular_file

YEAR_IN_TITLE = re.compile(r"\((\d{4})\)\s*$")
# MovieLens-1M's age groups; ML-100K's exact ages are bucketed onto them so both share one field.
AGE_GROUPS = (1, 18, 25, 35, 45, 50, 56)
PLOT_TABLE_HEADER = "movieId\tsource\ttext"  # movie-text/plots.tsv: several rows (sources) per movie


@dataclass
class ItemInfo:
    """Per item: title, year (0 = unknown), multi-hot genres, tags and a text document."""

    titles: list[str]
    years: np.ndarray
    genre_names: list[str]
    genres: np.ndarray  # (n_items, n_genres) uint8 multi-hot
    tags: list[list[str]]
    listed: np.ndarray  # bool per item: has a row in the metadata file
    documents: list[str] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        item_ids: IdMap,
        raw_ids: np.ndarray,
        titles: list[str],
        genres: list[list[str]],
        years: np.ndarray | None = None,
        genre_names: list[str] | None = None,
        tags: dict[int, list[str]] | None = None,
    ) -> ItemInfo:
        """Align rows of a metadata file to item indices; items without a row get blanks."""
        n = len(item_ids)
        index = item_ids.index_of(raw_ids)
        keep = np.flatnonzero(index >= 0)
        at = index[keep]
        aligned_titles = [""] * n
        aligned_genres: list[list[str]] = [[] for _ in range(n)]
        for row, item in zip(keep.tolist(), at.tolist(), strict=True):
            aligned_titles[item] = titles[row]
            aligned_genres[item] = genres[row]
        aligned_years = np.zeros(n, dtype=np.int16)
        if years is None:
            years = np.array([_year_from_title(t) for t in titles], dtype=np.int16)
        aligned_years[at] = years[keep]
        names = genre_names or sorted({g for gs in aligned_genres for g in gs})
        column = {g: i for i, g in enumerate(names)}
        multi_hot = np.zeros((n, len(names)), dtype=np.uint8)
        for item, gs in enumerate(aligned_genres):
            multi_hot[item, [column[g] for g in gs if g in column]] = 1
        aligned_tags: list[list[str]] = [[] for _ in range(n)]
        if tags:
            tag_index = item_ids.index_of(np.array(list(tags.keys())))
            for item, words in zip(tag_index.tolist(), tags.values(), strict=True):
                if item >= 0:
                    aligned_tags[item] = words
        listed = np.zeros(n, dtype=bool)
        listed[at] = True
        info = cls(aligned_titles, aligned_years, names, multi_hot, aligned_tags, listed)
        info.documents = [info.describe(i) for i in range(n)]
        return info

    def describe(self, item: int) -> str:
        """The default item document: title, year, genres and tags as plain text."""
        parts = [self.titles[item]]
        genres = [self.genre_names[g] for g in np.flatnonzero(self.genres[item])]
        if genres:
            parts.append("Genres: " + ", ".join(genres) + ".")
        if self.tags[item]:
            parts.append("Tags: " + ", ".join(self.tags[item]) + ".")
        return " ".join(p for p in parts if p)

    def load_documents(self, path: Path, item_ids: IdMap, with_metadata: bool = False) -> int:
        """Replace documents with the texts of a plot file; returns how many items got one.

        Two layouts: ConvMF's ``item_id::text`` lines, or a UTF-8 table whose header line is
        ``movieId<TAB>source<TAB>text``, one row per movie and source (``movie-text/plots.tsv``). Items the
        file gives no text keep the document built from their metadata; ids of items absent from the
        ratings are skipped. ``with_metadata`` puts the built document (title, year, genres, tags) before
        each text: a plot rarely names its genres, which are what a cold item's rating follows most.
        """
        path = regular_file(Path(path))
        texts = self._plot_table(path, item_ids) if _is_plot_table(path) else self._plot_lines(path, item_ids)
        for item, text in texts.items():
            self.documents[item] = f"{self.describe(item)} {text}" if with_metadata else text
        return len(texts)

    def _plot_lines(self, path: Path, item_ids: IdMap) -> dict[int, str]:
        """ConvMF's ``item_id::text`` lines: the text of each item they name."""
        given: dict[int, str] = {}
        # Lines as open() reads them: a plot's U+2028 or NEL (0x85 in Latin-1) does not end a line.
        for number, line in enumerate(io.StringIO(read_text(path), newline=None), start=1):
            if not line.strip():
                continue
            raw_id, sep, text = line.rstrip("\n").partition("::")
            if not sep:
                raise DeepMovieError(f"{where(path, number)}: expected 'item_id::text'")
            index = int(item_ids.index_of(np.array([raw_id.strip()]))[0])
            if index >= 0:
                given[index] = text.strip()
        if not given:
            raise DeepMovieError(f"{path}: no line names an item of this dataset")
        return given

    def _plot_table(self, path: Path, item_ids: IdMap) -> dict[int, str]:
        """A movie's non-blank texts joined in the order of their source names (one source's rows in
        file order), so its document does not depend on how the table is sorted."""
        ids: list[str] = []
        rows: list[tuple[str, str]] = []
        for number, line in enumerate(io.StringIO(_utf8_text(path), newline=None), start=1):
            if number == 1 or not line.strip():  # line 1: the header
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 3:
                raise DeepMovieError(
                    f"{where(path, number)}: expected 3 tab-separated fields (movieId, source, text), "
                    f"got {len(fields)}"
                )
            ids.append(fields[0].strip())
            rows.append((fields[1].strip(), fields[2].strip()))
        items = item_ids.index_of(np.array(ids, dtype=str)).tolist()
        texts: dict[int, list[tuple[str, str]]] = {}
        for item, (source, text) in zip(items, rows, strict=True):
            if item >= 0 and text:
                texts.setdefault(item, []).append((source, text))
        if not texts:
            raise DeepMovieError(f"{path}: no row gives text to an item of this dataset")
        return {
            item: " ".join(text for _, text in sorted(parts, key=lambda part: part[0]))
            for item, parts in texts.items()
        }


@dataclass
class UserInfo:
    """Categorical user features: field name -> (codes per user index, vocabulary)."""

    fields: dict[str, tuple[np.ndarray, list[str]]]
    listed: np.ndarray  # bool per user: has a row in the users file

    @classmethod
    def build(cls, user_ids: IdMap, raw_ids: np.ndarray, columns: dict[str, list[str]]) -> UserInfo:
        """Encode each column; code 0 is reserved for users with no row or an unseen value."""
        index = user_ids.index_of(raw_ids)
        keep = index >= 0
        fields = {}
        for name, values in columns.items():
            vocab = ["<unknown>", *sorted(set(values))]
            lookup = {v: i for i, v in enumerate(vocab)}
            codes = np.zeros(len(user_ids), dtype=np.int32)
            codes[index[keep]] = np.array([lookup[v] for v in values], dtype=np.int32)[keep]
            fields[name] = (codes, vocab)
        listed = np.zeros(len(user_ids), dtype=bool)
        listed[index[keep]] = True
        return cls(fields, listed)


def _is_plot_table(path: Path) -> bool:
    """Whether the file's first line is the plot table's header (after a UTF-8 byte order mark)."""
    with path.open("rb") as handle:
        first = handle.readline(64)
    return first.removeprefix(codecs.BOM_UTF8).rstrip(b"\r\n") == PLOT_TABLE_HEADER.encode()


def _utf8_text(path: Path) -> str:
    """A file that must be UTF-8, its byte order mark dropped; the first byte that is not names its line."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DeepMovieError(f"{where(path, line)}: not UTF-8 text ({exc.reason})") from None


def read_text(path: Path) -> str:
    """A side file's text: UTF-8, else ISO-8859-1 (as ML-100K's and ML-1M's are written). A NUL
    character, which no text file holds, is refused naming its line (binary data, or UTF-16)."""
    raw = regular_file(path).read_bytes()
    nul = raw.find(b"\0")
    if nul >= 0:
        line = raw.count(b"\n", 0, nul) + 1
        raise DeepMovieError(f"{where(path, line)}: a NUL character: binary data, not a text file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def age_group(age: int) -> str:
    """Bucket an exact age onto MovieLens-1M's groups (their lower bounds)."""
    return str(max(g for g in AGE_GROUPS if g <= max(age, 1)))


def _year_from_title(title: str) -> int:
    match = YEAR_IN_TITLE.search(title)
    return int(match.group(1)) if match else 0
