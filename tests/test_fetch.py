"""`deepmovie fetch`: download, verify and unpack against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import re
import socket
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import write_ratings
from deepmovie.data import catalog
from deepmovie.data import fetch as fetch_module
from deepmovie.data.dataset import load_dataset
from deepmovie.data.fetch import fetch
from deepmovie.errors import DeepMovieError

PINNED = "ml-32m"  # a release whose digest the catalog records (patched per test to the generated zip)
PUBLISHED = "ml-latest"  # a release verified against the NAME.zip.md5 file beside the zip
CLI_TIMEOUT_S = 60


@dataclasses.dataclass
class Site:
    """What the test server serves, and what it was asked for."""

    url: str
    files: dict[str, bytes] = dataclasses.field(default_factory=dict)
    truncated: set[str] = dataclasses.field(default_factory=set)
    requests: list[str] = dataclasses.field(default_factory=list)

    def count(self, filename: str) -> int:
        return self.requests.count(f"/{filename}")


class _Handler(BaseHTTPRequestHandler):
    site: Site

    def do_GET(self) -> None:
        self.site.requests.append(self.path)
        body = self.site.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path in self.site.truncated:  # promise the whole body, send half, hang up
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def site(monkeypatch) -> Iterator[Site]:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    handler = type("Handler", (_Handler,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    handler.site = state = Site(f"http://127.0.0.1:{server.server_port}/")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("DEEPMOVIE_BASE_URL", state.url)
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def movielens_zip(tmp_path: Path, folder: str, extra: dict[str, bytes] | None = None) -> tuple[bytes, int]:
    """A small generated zip in the MovieLens CSV layout (never real MovieLens data); (bytes, ratings)."""
    n_items = 25
    ratings = write_ratings(tmp_path / f"{folder}-ratings.csv", n_users=20, n_items=n_items, density=0.4)
    movies = "movieId,title,genres\n" + "".join(
        f'{i},"Movie {i} (2000)",Drama|Comedy\n' for i in range(1, n_items + 1)
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{folder}/", b"")
        zf.write(ratings, f"{folder}/ratings.csv")
        zf.writestr(f"{folder}/movies.csv", movies)
        zf.writestr(f"{folder}/README.txt", "generated for the tests\n")
        for entry, data in (extra or {}).items():
            zf.writestr(entry, data)
    rows = len(ratings.read_text().splitlines()) - 1
    return buffer.getvalue(), rows


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def pin(monkeypatch, name: str, digest: str | None) -> None:
    monkeypatch.setitem(catalog.RELEASES, name, dataclasses.replace(catalog.RELEASES[name], md5=digest))


def assert_clean(home: Path, name: str) -> None:
    """A failed fetch leaves no zip, no .part, no dataset folder and no staging folder."""
    downloads = home / "downloads"
    assert not downloads.exists() or list(downloads.iterdir()) == []
    datasets = home / "datasets"
    assert not datasets.exists() or list(datasets.iterdir()) == []
    assert catalog.installed_path(name) is None


@pytest.fixture
def pinned(site, monkeypatch, tmp_path) -> tuple[bytes, int]:
    data, rows = movielens_zip(tmp_path, PINNED)
    site.files[f"/{PINNED}.zip"] = data
    pin(monkeypatch, PINNED, md5(data))
    return data, rows


def test_fetch_unpacks_a_loadable_dataset_and_cleans_up(site, pinned, deepmovie_home):
    path = fetch(PINNED, quiet=True)
    assert path == deepmovie_home / "datasets" / PINNED
    assert sorted(p.name for p in path.iterdir()) == ["README.txt", "movies.csv", "ratings.csv"]
    assert list((deepmovie_home / "datasets").iterdir()) == [path]  # no staging folder left
    assert list((deepmovie_home / "downloads").iterdir()) == []  # zip removed after success
    dataset = load_dataset(PINNED)
    assert len(dataset.interactions) == pinned[1]
    assert dataset.layout == "ml-latest"
    assert dataset.items is not None


def test_a_present_dataset_is_not_downloaded_again_unless_forced(site, pinned):
    first = fetch(PINNED, quiet=True)
    assert fetch(PINNED, quiet=True) == first
    assert site.count(f"{PINNED}.zip") == 1
    (first / "marker").write_text("old copy")
    assert fetch(PINNED, quiet=True, force=True) == first
    assert site.count(f"{PINNED}.zip") == 2
    assert not (first / "marker").exists()  # the forced fetch replaced the folder whole
    assert len(load_dataset(PINNED).interactions) == pinned[1]


def test_checksum_mismatch_deletes_everything(site, pinned, monkeypatch, deepmovie_home):
    pin(monkeypatch, PINNED, "0" * 32)
    with pytest.raises(DeepMovieError, match="checksum mismatch") as error:
        fetch(PINNED, quiet=True)
    assert "0" * 32 in str(error.value) and md5(pinned[0]) in str(error.value)
    assert_clean(deepmovie_home, PINNED)


def test_http_404_is_a_one_line_error(site, monkeypatch, deepmovie_home):
    pin(monkeypatch, PINNED, "0" * 32)
    with pytest.raises(DeepMovieError, match="404") as error:
        fetch(PINNED, quiet=True)
    assert f"{site.url}{PINNED}.zip" in str(error.value)
    assert_clean(deepmovie_home, PINNED)


def test_connection_refused_is_a_one_line_error(monkeypatch, deepmovie_home):
    pin(monkeypatch, PINNED, "0" * 32)
    with socket.socket() as sock:  # a port nothing listens on once this socket closes
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("DEEPMOVIE_BASE_URL", f"http://127.0.0.1:{port}")
    with pytest.raises(DeepMovieError, match=re.escape(f"127.0.0.1:{port}/{PINNED}.zip failed")):
        fetch(PINNED, quiet=True)
    assert_clean(deepmovie_home, PINNED)


def test_truncated_body_leaves_no_part_file(site, pinned, deepmovie_home):
    site.truncated.add(f"/{PINNED}.zip")
    with pytest.raises(DeepMovieError, match="truncated") as error:
        fetch(PINNED, quiet=True)
    assert f"{PINNED}.zip" in str(error.value)
    assert_clean(deepmovie_home, PINNED)


def test_interrupt_mid_download_leaves_no_part_file(site, pinned, monkeypatch, deepmovie_home):
    class Interrupting:
        def __init__(self, *args, **kwargs) -> None:
            pass

        def __enter__(self) -> Interrupting:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def update(self, n: int) -> None:
            assert (deepmovie_home / "downloads" / f"{PINNED}.zip.part").is_file()
            raise KeyboardInterrupt

    monkeypatch.setattr(fetch_module, "tqdm", Interrupting)
    with pytest.raises(KeyboardInterrupt):
        fetch(PINNED)
    assert_clean(deepmovie_home, PINNED)


@pytest.mark.parametrize(
    "entry", [f"{PINNED}/../../escaped.txt", "/tmp/deepmovie-escaped.txt", f"{PINNED}\\..\\..\\escaped.txt"]
)
def test_zip_slip_entries_are_refused(site, monkeypatch, tmp_path, deepmovie_home, entry):
    data, _ = movielens_zip(tmp_path, PINNED, {entry: b"outside"})
    site.files[f"/{PINNED}.zip"] = data
    pin(monkeypatch, PINNED, md5(data))
    with pytest.raises(DeepMovieError, match="unsafe entry"):
        fetch(PINNED, quiet=True)
    assert_clean(deepmovie_home, PINNED)
    assert not list(deepmovie_home.parent.rglob("escaped.txt"))
    assert not Path("/tmp/deepmovie-escaped.txt").exists()


def test_a_failed_forced_fetch_keeps_the_dataset_already_there(site, pinned, monkeypatch, tmp_path):
    path = fetch(PINNED, quiet=True)
    data, _ = movielens_zip(tmp_path, PINNED, {"../evil.txt": b"x"})
    site.files[f"/{PINNED}.zip"] = data
    pin(monkeypatch, PINNED, md5(data))
    with pytest.raises(DeepMovieError, match="unsafe entry"):
        fetch(PINNED, quiet=True, force=True)
    assert [p.name for p in path.parent.iterdir()] == [PINNED]
    assert len(load_dataset(PINNED).interactions) == pinned[1]


def test_a_zip_without_the_release_folder_is_refused(site, monkeypatch, tmp_path, deepmovie_home):
    data, _ = movielens_zip(tmp_path, "something-else")
    site.files[f"/{PINNED}.zip"] = data
    pin(monkeypatch, PINNED, md5(data))
    with pytest.raises(DeepMovieError, match=f"no {PINNED}/ folder"):
        fetch(PINNED, quiet=True)
    assert_clean(deepmovie_home, PINNED)


@pytest.mark.parametrize("style", ["bsd", "gnu"])
def test_unpinned_release_is_verified_against_the_published_md5(site, tmp_path, style):
    assert catalog.RELEASES[PUBLISHED].md5 is None
    data, rows = movielens_zip(tmp_path, PUBLISHED)
    digest = md5(data)
    site.files[f"/{PUBLISHED}.zip"] = data
    line = f"MD5 ({PUBLISHED}.zip) = {digest}\n" if style == "bsd" else f"{digest.upper()}  {PUBLISHED}.zip\n"
    site.files[f"/{PUBLISHED}.zip.md5"] = line.encode()
    fetch(PUBLISHED, quiet=True)
    assert len(load_dataset(PUBLISHED).interactions) == rows


def test_published_md5_mismatch_is_refused(site, tmp_path, deepmovie_home):
    data, _ = movielens_zip(tmp_path, PUBLISHED)
    site.files[f"/{PUBLISHED}.zip"] = data
    site.files[f"/{PUBLISHED}.zip.md5"] = f"MD5 ({PUBLISHED}.zip) = {'a' * 32}\n".encode()
    with pytest.raises(DeepMovieError, match="checksum mismatch"):
        fetch(PUBLISHED, quiet=True)
    assert_clean(deepmovie_home, PUBLISHED)


def test_no_checksum_anywhere_refuses_before_downloading_unless_overridden(site, tmp_path, deepmovie_home):
    data, _ = movielens_zip(tmp_path, PUBLISHED)
    site.files[f"/{PUBLISHED}.zip"] = data
    with pytest.raises(DeepMovieError, match="no checksum"):
        fetch(PUBLISHED, quiet=True)
    assert site.count(f"{PUBLISHED}.zip") == 0
    assert_clean(deepmovie_home, PUBLISHED)
    with pytest.raises(DeepMovieError, match="32 hexadecimal"):
        fetch(PUBLISHED, quiet=True, md5="not-a-digest")
    with pytest.raises(DeepMovieError, match="checksum mismatch"):
        fetch(PUBLISHED, quiet=True, md5="b" * 32)
    assert fetch(PUBLISHED, quiet=True, md5=md5(data).upper()).is_dir()
    assert fetch(PUBLISHED, quiet=True, force=True, allow_unverified=True).is_dir()


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(DeepMovieError, match="unknown dataset 'ml-3m'") as error:
        fetch("ml-3m")
    assert all(name in str(error.value) for name in catalog.RELEASES)


def start_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "deepmovie", "fetch", *args],
        env=dict(os.environ),  # carries the per-test DEEPMOVIE_HOME and DEEPMOVIE_BASE_URL
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=CLI_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    return process.returncode, out, err


def test_cli_fetch_prints_the_folder_and_reports_errors_in_one_line(site, tmp_path, deepmovie_home):
    data, _ = movielens_zip(tmp_path, PUBLISHED)
    site.files[f"/{PUBLISHED}.zip"] = data
    site.files[f"/{PUBLISHED}.zip.md5"] = f"MD5 ({PUBLISHED}.zip) = {md5(data)}\n".encode()
    good, bad = start_cli(PUBLISHED, "--quiet"), start_cli("ml-nope")  # side by side: startup dominates
    code, out, err = finish(good)
    assert code == 0, err
    assert out.strip() == str(deepmovie_home / "datasets" / PUBLISHED)
    assert (deepmovie_home / "datasets" / PUBLISHED / "ratings.csv").is_file()

    code, out, err = finish(bad)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown dataset 'ml-nope'")
