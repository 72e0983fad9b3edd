"""Named datasets: the bundled default and the official MovieLens releases users can fetch."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

BASE_URL = "https://files.grouplens.org/datasets/movielens/"
DEFAULT_DATASET = "ml-latest-small"


@dataclass(frozen=True)
class Release:
    """One official MovieLens zip: where it lives and the folder it unpacks to."""

    name: str
    folder: str
    ratings: str
    md5: str | None = None

    @property
    def url(self) -> str:
        return f"{BASE_URL}{self.name}.zip"


RELEASES = {
    r.name: r
    for r in (
        Release("ml-100k", "ml-100k", "100,000"),
        Release("ml-1m", "ml-1m", "1,000,209"),
        Release("ml-10m", "ml-10M100K", "10,000,054"),
        Release("ml-20m", "ml-20m", "20,000,263"),
        Release("ml-25m", "ml-25m", "25,000,095"),
        Release("ml-32m", "ml-32m", "32,000,204"),
        Release("ml-latest-small", "ml-latest-small", "100,836"),
        Release("ml-latest", "ml-latest", "about 33,000,000"),
    )
}


def home() -> Path:
    """Where fetched datasets and load caches live (``DEEPMOVIE_HOME``, default ~/.cache/deepmovie)."""
    return Path(os.environ.get("DEEPMOVIE_HOME", Path.home() / ".cache" / "deepmovie"))


def bundled_path() -> Path:
    return Path(str(resources.files("deepmovie") / "datasets" / DEFAULT_DATASET))


def installed_path(name: str) -> Path | None:
    """The folder of a named dataset if it is on disk (bundled or fetched), else None."""
    if name == DEFAULT_DATASET:
        return bundled_path()
    release = RELEASES.get(name)
    if release is None:
        return None
    folder = home() / "datasets" / release.folder
    return folder if folder.is_dir() else None
