"""Download an official MovieLens zip, verify its MD5 and unpack it into DEEPMOVIE_HOME atomically.

Each step leaves either its finished result or nothing: the zip streams into ``NAME.zip.part`` (removed
on any error or Ctrl-C), is renamed only once complete, and is unpacked into a hidden sibling folder that
is renamed into place only once fully written. An interrupted fetch is therefore retried by running it
again, never by cleaning up by hand.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

from deepmovie import __version__
from deepmovie.data import catalog
from deepmovie.errors import DeepMovieError

log = logging.getLogger("deepmovie")

CHUNK_BYTES = 1 << 20  # big enough for full speed, small enough for a smooth progress bar
TIMEOUT_S = 60.0  # per socket operation, not for the whole download
MD5_FILE_MAX_BYTES = 4096  # a published .md5 file is one line; never read a misdirected big body
_DIGEST = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{32}(?![0-9a-fA-F])")


def fetch(
    name: str,
    *,
    force: bool = False,
    quiet: bool = False,
    md5: str | None = None,
    allow_unverified: bool = False,
) -> Path:
    """Download release ``name``, verify it, unpack it and return its folder (home()/datasets/FOLDER).

    A folder already on disk is returned as is unless ``force``. The zip comes from ``release.url``
    (``DEEPMOVIE_BASE_URL`` replaces the GroupLens base, for mirrors). Its MD5 must match, in order of
    precedence: ``md5`` given here; the digest recorded in the catalog; the ``NAME.zip.md5`` file
    published beside the zip (the ml-latest zips are re-issued in place, so only that file knows their
    current digest). With none of these the fetch is refused before downloading, unless
    ``allow_unverified`` accepts the zip unchecked. The published file travels over the same connection
    as the zip, so it guards against corrupt transfers, not against a hostile server; the catalog
    digests guard against both.
    """
    release = catalog.RELEASES.get(name)
    if release is None:
        raise DeepMovieError(f"unknown dataset {name!r}; known: {', '.join(catalog.RELEASES)}")
    datasets = catalog.home() / "datasets"
    target = datasets / release.folder
    if target.is_dir() and not force:
        return target
    expected = _expected_md5(release, md5, allow_unverified)
    downloads = catalog.home() / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    datasets.mkdir(parents=True, exist_ok=True)
    archive = downloads / f"{release.name}.zip"
    try:
        actual = _download(release.url, archive, label=release.name, quiet=quiet)
        if expected is None:
            log.warning("%s: no checksum to check; accepted unverified (md5 %s)", release.url, actual)
        elif actual != expected:
            raise DeepMovieError(
                f"{release.url}: checksum mismatch, expected md5 {expected} but the download has {actual}; "
                "the file was deleted (a corrupt transfer or a changed release: retry, or check the mirror)"
            )
        _unpack(archive, datasets, release.folder)
    finally:
        archive.unlink(missing_ok=True)  # a verified zip is only an intermediate; a bad one is dangerous
    log.info("fetched %s into %s", release.name, target)
    return target


def _expected_md5(release: catalog.Release, md5: str | None, allow_unverified: bool) -> str | None:
    """The digest the download must have, decided before any big transfer starts."""
    if md5 is not None:
        if not _DIGEST.fullmatch(md5.strip()):
            raise DeepMovieError(f"md5 {md5!r}: expected 32 hexadecimal digits")
        return md5.strip().lower()
    if release.md5 is not None:
        return release.md5
    published = _published_md5(release.md5_url)
    if published is not None or allow_unverified:
        return published
    raise DeepMovieError(
        f"{release.name}: no checksum to verify {release.url} against (the catalog has none and "
        f"{release.md5_url} is not published); give the expected digest (--md5 HEX) or accept the zip "
        "unchecked (--allow-unverified)"
    )


def _published_md5(url: str) -> str | None:
    """The digest in a ``NAME.zip.md5`` file (BSD ``MD5 (f) = hex`` or GNU ``hex  f``); None if absent."""
    try:
        with _open(url) as response:
            text = response.read(MD5_FILE_MAX_BYTES).decode("ascii", errors="replace")
    except urllib.error.HTTPError as exc:
        if 400 <= exc.code < 500:  # not published (S3-style mirrors answer 403 for a missing key)
            return None
        raise DeepMovieError(f"download {url} failed: {_reason(exc)}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise DeepMovieError(f"download {url} failed: {_reason(exc)}") from None
    found = _DIGEST.search(text)
    if found is None:
        raise DeepMovieError(f"{url}: no MD5 digest in the published checksum file")
    return found.group().lower()


def _download(url: str, archive: Path, *, label: str, quiet: bool) -> str:
    """Stream ``url`` into ``archive`` through a .part file, hashing on the way; returns the MD5."""
    part = archive.with_name(archive.name + ".part")
    digest = hashlib.md5(usedforsecurity=False)
    received = 0
    try:
        with _open(url) as response, open(part, "wb") as out:
            length = _content_length(response)
            with tqdm(
                total=length,
                desc=label,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                disable=quiet or not sys.stderr.isatty(),
            ) as bar:
                while chunk := response.read(CHUNK_BYTES):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        if length is not None and received != length:
            raise DeepMovieError(
                f"download {url} failed: truncated, the server sent {received:,} of {length:,} bytes"
            )
        os.replace(part, archive)
    except (OSError, http.client.HTTPException) as exc:  # URLError and HTTPError are OSErrors
        part.unlink(missing_ok=True)
        raise DeepMovieError(f"download {url} failed: {_reason(exc)}") from None
    except BaseException:  # our own errors, KeyboardInterrupt: never leave a partial file behind
        part.unlink(missing_ok=True)
        raise
    return digest.hexdigest()


def _open(url: str) -> http.client.HTTPResponse:
    request = urllib.request.Request(url, headers={"User-Agent": f"deepmovie/{__version__}"})
    return urllib.request.urlopen(request, timeout=TIMEOUT_S)


def _content_length(response: http.client.HTTPResponse) -> int | None:
    value = response.headers.get("Content-Length")
    return int(value) if value is not None and value.strip().isdigit() else None


def _reason(exc: BaseException) -> str:
    """One readable line for a network failure, without a traceback."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    if isinstance(exc, http.client.IncompleteRead):
        return f"connection closed early ({len(exc.partial):,} bytes of the last read)"
    return str(exc) or type(exc).__name__


def _unpack(archive: Path, datasets: Path, folder: str) -> None:
    """Unzip into a hidden sibling of the release folder, then rename it into place in one step."""
    staging = Path(tempfile.mkdtemp(prefix=f".{folder}-", suffix=".partial", dir=datasets))
    try:
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            for entry in names:
                _check_entry(archive, entry)
            if not any(entry.replace("\\", "/").split("/", 1)[0] == folder for entry in names):
                raise DeepMovieError(f"{archive.name}: the zip has no {folder}/ folder")
            zf.extractall(staging)
        _replace_folder(staging / folder, datasets / folder, staging)
    except zipfile.BadZipFile as exc:
        raise DeepMovieError(f"{archive.name}: not a readable zip ({exc})") from None
    except OSError as exc:
        raise DeepMovieError(f"unpacking {archive.name} into {datasets} failed: {exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_entry(archive: Path, entry: str) -> None:
    """Refuse zip-slip: an entry must stay inside the folder it is extracted into."""
    path = entry.replace("\\", "/")
    if path.startswith("/") or re.match(r"[A-Za-z]:", path) or ".." in path.split("/"):
        raise DeepMovieError(f"{archive.name}: refusing unsafe entry {entry!r} (absolute path or '..')")


def _replace_folder(new: Path, target: Path, staging: Path) -> None:
    """Swap ``new`` in for ``target`` by renames; the old copy lands in ``staging``, deleted with it."""
    if not target.exists():
        os.replace(new, target)
        return
    old = Path(tempfile.mkdtemp(dir=staging)) / "previous"  # a fresh name no zip entry can collide with
    os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old, target)
        raise
