"""Named datasets: the bundled default and the official MovieLens releases users can fetch."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

BASE_URL = "https://files.grouplens.org/datasets/movielens/"
BASE_URL_ENV = "DEEPMOVIE_BASE_URL"  # a mirror (or a test server) holding the same NAME.zip files
DEFAULT_DATASET = "ml-latest-small"


@dataclass(frozen=True)
class Release:
    """One official MovieLens zip: where it lives and the folder it unpacks to."""

    name: str
    folder: str
    ratings: str
    md5: str | None = None  # GroupLens's published digest of NAME.zip; None: use NAME.zip.md5 beside it

    @property
    def url(self) -> str:
        return f"{base_url()}{self.name}.zip"

    @property
    def md5_url(self) -> str:
        """GroupLens publishes ``NAME.zip.md5`` next to every zip."""
        return f"{self.url}.md5"


RELEASES = {
    r.name: r
    for r in (
        # Digests as published in GroupLens's NAME.zip.md5 files. The ml-latest zips are re-issued in
        # place, so they carry none: fetch reads the published .md5 at download time instead.
        Release("ml-100k", "ml-100k", "100,000", "0e33842e24a9c977be4e0107933c0723"),
        Release("ml-1m", "ml-1m", "1,000,209", "c4d9eecfca2ab87c1945afe126590906"),
        Release("ml-10m", "ml-10M100K", "10,000,054", "ce571fd55effeba0271552578f2648bd"),
        Release("ml-20m", "ml-20m", "20,000,263", "cd245b17a1ae2cc31bb14903e1204af3"),
        Release("ml-25m", "ml-25m", "25,000,095", "6b51fb2759a8657d3bfcbfc42b592ada"),
        Release("ml-32m", "ml-32m", "32,000,204", "d472be332d4daa821edc399621853b57"),
        Release("ml-latest-small", "ml-latest-small", "100,836"),
        Release("ml-latest", "ml-latest", "about 33,000,000"),
    )
}


def base_url() -> str:
    """Where the release zips are downloaded from: ``DEEPMOVIE_BASE_URL`` if set, else GroupLens."""
    url = os.environ.get(BASE_URL_ENV) or BASE_URL
    return url if url.endswith("/") else url + "/"


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
