"""Side information in one model-ready form, aligned to the contiguous item and user indices."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deepmovie.data.interactions import IdMap
from deepmovie.errors import DeepMovieError, where

YEAR_IN_TITLE = re.compile(r"\((\d{4})\)\s*$")
# MovieLens-1M's age groups; ML-100K's exact ages are bucketed onto them so both share one field.
AGE_GROUPS = (1, 18, 25, 35, 45, 50, 56)


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

    def load_documents(self, path: Path, item_ids: IdMap) -> int:
        """Replace documents with a ConvMF-style plot file (``item_id::text``); returns lines used."""
        path = Path(path)
        if not path.is_file():
            raise DeepMovieError(f"{path}: no such file")
        used = 0
        with open(path, encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                raw_id, sep, text = line.rstrip("\n").partition("::")
                if not sep:
                    raise DeepMovieError(f"{where(path, number)}: expected 'item_id::text'")
                index = int(item_ids.index_of(np.array([raw_id.strip()]))[0])
                if index >= 0:
                    self.documents[index] = text.strip()
                    used += 1
        if used == 0:
            raise DeepMovieError(f"{path}: no line names an item of this dataset")
        return used


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


def age_group(age: int) -> str:
    """Bucket an exact age onto MovieLens-1M's groups (their lower bounds)."""
    return str(max(g for g in AGE_GROUPS if g <= max(age, 1)))


def _year_from_title(title: str) -> int:
    match = YEAR_IN_TITLE.search(title)
    return int(match.group(1)) if match else 0
