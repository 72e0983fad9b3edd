"""Hostile input: a corpus of malformed ratings files, configs, option values, paths, side files and
damaged run directories, each run through the CLI in this process. Every one must be refused the way
the CLI promises: exit code 2, one stderr line naming the file, line or field, no traceback, and
nothing written (the folder it ran in is unchanged, down to the mtimes).

The corpus is generated here (nothing stored); each case builds its inputs in its own folder before
the snapshot. Cases that must not be errors have no place in it.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_one_error_line, snapshot, write_movies, write_ratings
from deepmovie import experiment
from deepmovie.config import build_config
from deepmovie.rundir import CONFIG, ID_MAPS, ITEMS, MANIFEST, SEEN, SUMMARY, WEIGHTS

HEADER = "userId,movieId,rating,timestamp\n"
ROW = "1,1,4,100\n"
GOOD_ROWS = "".join(f"{u},{i},{1 + u * i % 5},{100 + i}\n" for u in range(2, 8) for i in range(2, 8))
QUICK = ("--set", "epochs=1", "-q")
GENRES = ["Drama", "Comedy", "Action"]


@dataclass
class Workspace:
    """One case's folder, and the finished run it may copy and damage."""

    root: Path
    trained: Path

    @property
    def out(self) -> Path:
        """An --out that must never come to exist."""
        return self.root / "out"

    def file(self, name: str, content: bytes | str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    def good(self, name: str = "good.csv") -> Path:
        return write_ratings(self.root / name, n_users=12, n_items=15, density=0.5)

    def folder(self, files: dict[str, bytes | str] | None = None) -> Path:
        """A dataset folder: good ratings.csv and movies.csv, then ``files`` (name -> content)."""
        folder = self.root / "data"
        folder.mkdir()
        self.good("data/ratings.csv")
        write_movies(folder / "movies.csv", 15, GENRES)
        for name, content in (files or {}).items():
            self.file(f"data/{name}", content)
        return folder

    def ml_1m(self, users: str) -> Path:
        """An ML-1M-style folder (``::`` ratings) with ``users`` as its users.dat."""
        folder = self.root / "ml1m"
        folder.mkdir()
        (folder / "ratings.dat").write_text(
            "".join(f"{u}::{i}::{1 + (u + i) % 5}::1\n" for u in (1, 2) for i in (1, 2, 3))
        )
        (folder / "users.dat").write_text(users)
        return folder

    def ml_100k(self, **side: str) -> Path:
        """An ML-100K-style folder (tab-separated u.data) with ``side`` files (``user=``: u.user)."""
        folder = self.root / "ml100k"
        folder.mkdir()
        (folder / "u.data").write_text(
            "".join(f"{u}\t{i}\t{1 + (u + i) % 5}\t1\n" for u in (1, 2) for i in (1, 2, 3))
        )
        for name, content in side.items():
            (folder / f"u.{name}").write_text(content)
        return folder

    def run(self) -> Path:
        return Path(shutil.copytree(self.trained, self.root / "run"))


Built = tuple[list[object], str]  # (deepmovie arguments, text the error line must hold)
Case = Callable[[Workspace], Built]


def train(w: Workspace, *args: object, data: object = None, model: str = "bias") -> list[object]:
    return ["train", model, "--data", data or w.good(), *args, "--out", w.out, *QUICK]


def rows(*lines: str) -> str:
    """A ratings file whose line 3 on are ``lines``, followed by enough good rows to train on."""
    return HEADER + ROW + "".join(f"{line}\n" for line in lines) + GOOD_ROWS


def ratings_file(
    content: bytes | str | Callable[[], bytes], *args: str, expect: str, name: str = "r.csv"
) -> Case:
    """``train`` on a ratings file; ``{file}`` in ``expect`` is its path."""

    def build(w: Workspace) -> Built:
        path = w.file(name, content() if callable(content) else content)
        return train(w, *args, data=path), expect.format(file=path)

    return build


def option(*args: str, expect: str, model: str = "bias") -> Case:
    """``train`` on good ratings with ``args``."""
    return lambda w: (train(w, *args, model=model), expect)


def command(*args: object, expect: str) -> Case:
    """Any command; ``{out}`` in ``args`` is the case's --out, ``{good}`` a good ratings file."""

    def build(w: Workspace) -> Built:
        fill = {"{out}": w.out, "{good}": w.good()}
        return [fill.get(a, a) if isinstance(a, str) else a for a in args], expect

    return build


def config(content: bytes | str, expect: str) -> Case:
    """``train --config FILE`` on good ratings (the config names the model)."""

    def build(w: Workspace) -> Built:
        path = w.file("config.yaml", content)
        args = ["train", "--config", path, "--data", w.good(), "--out", w.out, *QUICK]
        return args, expect.format(file=path)

    return build


def side(files: dict[str, bytes | str], expect: str) -> Case:
    """``train`` on a dataset folder whose side files are ``files``; ``{dir}`` is the folder."""

    def build(w: Workspace) -> Built:
        folder = w.folder(files)
        return train(w, data=folder), expect.format(dir=folder)

    return build


def docs(content: bytes | str, expect: str) -> Case:
    """``train --item-docs FILE`` on a dataset folder with metadata; ``{file}`` is the documents file."""

    def build(w: Workspace) -> Built:
        path = w.file("docs.txt", content)
        return train(w, "--item-docs", path, data=w.folder()), expect.format(file=path)

    return build


def tune(*args: str, expect: str) -> Case:
    return command("tune", "bias", *args, "--data", "{good}", "--out", "{out}", expect=expect)


def bench(*args: str, expect: str) -> Case:
    return command("bench", *args, "--data", "{good}", "--out", "{out}", expect=expect)


def damaged(name: str, content: bytes | str | None, *args: str, expect: str) -> Case:
    """A copy of the finished run with ``name`` replaced by ``content`` (None: removed), met by
    ``args`` (a command and its options; RUN stands for the run)."""

    def build(w: Workspace) -> Built:
        run = w.run()
        if content is None:
            (run / name).unlink()
        else:
            w.file(f"run/{name}", content)
        return [run if a == "RUN" else a for a in args], expect.format(run=run, file=run / name)

    return build


def special(kind: str, role: str) -> Case:
    """A device, a pipe, a folder or a missing path given where a regular file is read."""

    def build(w: Workspace) -> Built:
        path = {
            "missing": w.root / "missing.csv",
            "folder": w.root / "folder",
            "device": Path("/dev/zero"),
            "pipe": w.root / "pipe",
        }[kind]
        if kind == "pipe":
            os.mkfifo(path)
        elif kind == "folder":
            path.mkdir()
        args = {
            "data": train(w, data=path),
            "test-file": train(w, "--test-file", path),
            "config": train(w, "--config", path),
            "item-docs": train(w, "--item-docs", path, data=w.folder()),
        }[role]
        return args, str(path)

    return build


def gzip_of(text: str) -> bytes:
    return gzip.compress(text.encode())


def zip_of(text: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("ratings.csv", text)
    return buffer.getvalue()


def npz(**arrays: object) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def laughs(levels: int = 9) -> str:
    """The billion laughs: each level's list names the previous one nine times."""
    lines = ['a0: &a0 ["lol"]']
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]" for n in range(1, levels + 1)]
    return "model: bias\nparams:\n  " + "\n  ".join(lines) + "\n"


FILES: dict[str, Case] = {
    "empty": ratings_file(b"", expect="{file}: the file is empty"),
    "blank-lines": ratings_file(b"\n   \n\t\n", expect="{file}: the file is empty"),
    "header-only": ratings_file(HEADER, expect="{file}: the file is empty"),
    "header-only-crlf": ratings_file(HEADER.replace("\n", "\r\n"), expect="{file}: the file is empty"),
    "one-field": ratings_file("1\n2\n", expect="{file}:1:"),
    "two-fields": ratings_file("1,2\n3,4\n", expect="{file}:1:"),
    "ragged-long-row": ratings_file(rows("1,3,4,5,6"), expect="{file}:3: 5 field(s)"),
    "ragged-short-row": ratings_file(rows("1,3"), expect="{file}:3: 2 field(s)"),
    "ragged-late-row": ratings_file(
        HEADER + "".join(f"{u},{i},3,1\n" for u in range(1, 41) for i in range(1, 51)) + "7,8\n",
        expect="{file}:2002: 2 field(s)",
    ),
    "nan-rating": ratings_file(rows("2,2,NaN,1"), expect="{file}:3: missing rating"),
    "inf-rating": ratings_file(rows("2,2,inf,1"), expect="{file}:3: rating is inf"),
    "minus-inf-rating": ratings_file(rows("2,2,-inf,1"), expect="{file}:3: rating is -inf"),
    "overflowing-rating": ratings_file(rows("2,2,1e300,1"), expect="{file}:3: rating is inf"),
    "text-rating": ratings_file(rows("2,2,good,1"), expect="{file}:3: rating 'good' is not a number"),
    "empty-rating": ratings_file(rows("2,2,,1"), expect="{file}:3: missing rating"),
    "rating-above-scale": ratings_file(
        rows("2,2,7,1"), "--rating-scale", "1:5", expect="{file}:3: rating 7 is outside 1..5"
    ),
    "rating-below-scale": ratings_file(
        rows("2,2,-1,1"), "--rating-scale", "0.5:5", expect="{file}:3: rating -1 is outside 0.5..5"
    ),
    "ml-100k-rating-off-scale": lambda w: (
        train(w, data=w.file("ml/u.data", "1\t1\t5\t100\n1\t2\t6\t101\n").parent),
        f"{w.root / 'ml' / 'u.data'}:2: rating 6 is outside 1..5",
    ),
    "empty-user-id": ratings_file(rows(",2,4,1"), expect="{file}:3: missing user value"),
    "empty-item-id": ratings_file(rows("2,,4,1"), expect="{file}:3: missing item value"),
    "fractional-user-id": ratings_file(rows("1.5,2,4,1"), expect="{file}:3: user id 1.5"),
    "user-id-past-int64": ratings_file(
        rows("99999999999999999999,2,4,1"), expect="{file}:3: user id 99999999999999999999 does not fit"
    ),
    "text-timestamp": ratings_file(rows("2,2,4,yesterday"), expect="{file}:3: timestamp 'yesterday'"),
    "nan-timestamp": ratings_file(rows("2,2,4,nan"), expect="{file}:3: missing timestamp"),
    "timestamp-past-int64": ratings_file(
        rows("2,2,4,99999999999999999999"), expect="{file}:3: timestamp is 1e+20, not a usable time"
    ),
    "unterminated-quote": ratings_file(rows('"2,2,4,1', "3,3,4,1"), expect="{file}:3:"),
    "nul-byte-in-id": ratings_file(rows("2\0,2,4,1"), expect="{file}:3: a NUL character"),
    "nul-bytes-only": ratings_file(b"\0" * 4096, expect="{file}:1: NUL characters"),
    "binary-garbage": ratings_file(bytes(range(256)) * 64, expect="{file}:1:"),
    "gzip-named-csv": ratings_file(gzip_of(rows("2,2,4,1")), expect="{file}: a gzip archive"),
    "zip-named-csv": ratings_file(zip_of(rows("2,2,4,1")), expect="{file}: a zip archive"),
    "utf-16-with-bom": ratings_file(rows("2,2,4,1").encode("utf-16"), expect="{file}: UTF-16 text"),
    "utf-16-without-bom": ratings_file(rows("2,2,4,1").encode("utf-16-le"), expect="{file}:1: NUL"),
    "latin-1-bytes": ratings_file(
        (HEADER + "1,1,4,1\ncafé,2,4,1\n").encode("latin-1"), expect="{file}:3: not valid utf-8"
    ),
    "utf-16-declared-on-utf-8": ratings_file(
        rows("2,2,4,1"), "--encoding", "utf-16", expect="{file}:1: not valid utf-16 text"
    ),
    "50-mb-single-line": ratings_file(lambda: b"1,2," + b"9" * 50_000_000, expect="{file}:1:"),
    "10m-character-field": ratings_file(
        lambda: rows("2," + "x" * 10_000_000 + ",4,1").encode(), expect="{file}:3:"
    ),
    "10m-digit-user-id": ratings_file(lambda: rows("7" * 10_000_000 + ",2,4,1").encode(), expect="{file}:3:"),
    "tab-file-with-comma-row": ratings_file(
        "u\ti\tr\n1\t1\t4\n2,3,4\n", "--columns", "user=u,item=i,rating=r", expect="{file}:3: 1 field(s)"
    ),
    "sep-semicolon-on-commas": ratings_file(rows(), "--sep", ";", expect="{file}:1: 1 field(s)"),
    "sep-comma-on-semicolons": ratings_file(
        "userId;movieId;rating\n1;10;4\n", "--sep", ",", expect="{file}:1: 1 field(s)"
    ),
    "sep-double-colon-on-commas": ratings_file(rows(), "--sep", "::", expect="{file}:1: 1 field(s)"),
    "sep-empty": ratings_file(rows(), "--sep", "", expect="{file}: delimiter ''"),
    "sep-two-characters": ratings_file(rows(), "--sep", ",,", expect="{file}: delimiter ',,'"),
    "sep-newline": ratings_file(rows(), "--sep", "\n", expect="{file}: delimiter '\\n'"),
    "sep-quote": ratings_file(rows(), "--sep", '"', expect="{file}: delimiter '\"'"),
    "no-header-on-a-header": ratings_file(
        rows(), "--no-header", expect="{file}:1: rating 'rating' is not a number"
    ),
    "header-on-headerless": ratings_file(
        "1,1,4,1\n2,2,5,1\n", "--header", expect="{file}:1: cannot tell which header column"
    ),
    "parquet-of-text": ratings_file(rows(), name="r.parquet", expect="{file}: not a readable Parquet file"),
    "one-row-left": ratings_file(HEADER + ROW, expect="split 'random:0.1' leaves an empty"),
    "ml-1m-ragged": lambda w: (
        train(w, data=w.file("ml1m/ratings.dat", "1::1::5::1\n1::2\n").parent),
        f"{w.root / 'ml1m' / 'ratings.dat'}:2: 2 field(s)",
    ),
}

OPTIONS: dict[str, Case] = {
    "columns-unknown-name": option("--columns", "user=nope", expect="no column named 'nope' for user"),
    "columns-position-past-the-row": option(
        "--columns", "user=9,item=1,rating=2", expect="column 9 for user"
    ),
    "columns-named-without-header": option(
        "--no-header", "--columns", "user=userId,item=movieId,rating=rating", expect="is a name, and the file"
    ),
    "columns-without-pairs": option("--columns", "user", expect="--columns 'user': expected role=column"),
    "columns-unknown-role": option("--columns", "actor=userId", expect="'read.columns'"),
    "encoding-unknown": option("--encoding", "klingon", expect="'klingon' is not a text encoding"),
    "encoding-not-text": option("--encoding", "base64", expect="'base64' is not a text encoding"),
    "rating-scale-reversed": option("--rating-scale", "5:1", expect="read.rating_scale"),
    "rating-scale-text": option("--rating-scale", "low:high", expect="read.rating_scale"),
    "rating-scale-one-number": option("--rating-scale", "5", expect="read.rating_scale"),
    "rating-scale-infinite": option("--rating-scale", "-inf:5", expect="read.rating_scale"),
    "rating-scale-nan": option("--rating-scale", "nan:5", expect="read.rating_scale"),
    "seed-negative": option("--seed", "-1", expect="'seed'"),
    "seed-2-to-the-70": option("--seed", str(2**70), expect="'seed'"),
    "seed-text": option("--seed", "abc", expect="'--seed'"),
    "valid-fraction-above-one": option("--valid-fraction", "1.5", expect="'valid_fraction'"),
    "valid-fraction-nan": option("--valid-fraction", "nan", expect="'valid_fraction'"),
    "valid-fraction-negative": option("--valid-fraction", "-0.1", expect="'valid_fraction'"),
    "rank-k-negative": option("--rank-k", "-1", expect="'rank_k'"),
    "rank-k-10-to-the-12": option(
        "--rank-k", str(10**12), expect="rank_k 1,000,000,000,000: more than the 15 items"
    ),
    "device-unknown": option("--device", "tpu", expect="'device'"),
    "kfold-0": option("--split", "kfold:0", expect="split 'kfold:0'"),
    "kfold-10-to-the-9": option("--split", "kfold:1000000000", expect="split 'kfold:1000000000'"),
    "kfold-fold-9-of-5": option("--split", "kfold:5:9", expect="split 'kfold:5:9'"),
    "kfold-fold-negative": option("--split", "kfold:5:-1", expect="split 'kfold:5:-1'"),
    "kfold-text": option("--split", "kfold:five", expect="split 'kfold:five'"),
    "random-1.5": option("--split", "random:1.5", expect="split 'random:1.5'"),
    "random-nan": option("--split", "random:nan", expect="split 'random:nan'"),
    "random-0": option("--split", "random:0", expect="split 'random:0'"),
    "random-test-and-valid-over-1": option("--split", "random:0.6:0.6", expect="split 'random:0.6:0.6'"),
    "random-too-many-parts": option("--split", "random:0.1:0.1:0.1", expect="split 'random:0.1:0.1:0.1'"),
    "users-negative": option("--split", "users:-3", expect="split 'users:-3'"),
    "users-more-than-there-are": option("--split", "users:1000000", expect="split 'users:1000000'"),
    "last-0": option("--split", "last:0", expect="split 'last:0'"),
    "user-holdout-0": option("--split", "user-holdout:0", expect="split 'user-holdout:0'"),
    "temporal-2": option("--split", "temporal:2", expect="split 'temporal:2'"),
    "fold-unknown": option("--split", "fold:u9", expect="split 'fold:u9'"),
    "fold-without-its-files": option("--split", "fold:u1", expect="u1.test"),
    "split-unknown": option("--split", "bogus", expect="unknown split 'bogus'"),
    "split-empty": option("--split", "", expect="unknown split ''"),
    "split-with-test-file": lambda w: (
        train(w, "--split", "kfold:3", "--test-file", w.good("test.csv")),
        "--split and --test-file are exclusive",
    ),
    "set-factors-10-to-the-8": option("--set", "factors=100000000", model="biased-mf", expect="--max-memory"),
    "set-hidden-list-10-to-the-8": option(
        "--set", "hidden=[100000000]", model="deepmf", expect="--max-memory"
    ),
    "set-hidden-10-to-the-8": option("--set", "hidden=100000000", model="autorec", expect="--max-memory"),
    "set-dim-10-to-the-8": option("--set", "dim=100000000", model="fm", expect="--max-memory"),
    "set-batch-size-as-power": option(
        "--set", "batch_size=10**12", model="biased-mf", expect="parameter 'batch_size'"
    ),
    "set-factors-negative": option("--set", "factors=-1", model="biased-mf", expect="parameter 'factors'"),
    "set-lr-nan": option("--set", "lr=.nan", model="biased-mf", expect="parameter 'lr'"),
    "set-lr-inf": option("--set", "lr=.inf", model="biased-mf", expect="parameter 'lr'"),
    "set-reg-nan": option("--set", "reg_user=.nan", expect="parameter 'reg_user'"),
    "set-patience-overflowing-float": option("--set", "patience=1e400", expect="parameter 'patience'"),
    "set-unknown-key": option("--set", "lr=0.1", expect="parameter 'lr' (known: epochs"),
    "set-without-value": option("--set", "=5", expect="--set '=5': expected key=value"),
    "set-without-equals": option("--set", "epochs", expect="--set 'epochs': expected key=value"),
    "set-yaml-alias": option("--set", "reg_user=[&a [1, 2], *a]", expect="parameter 'reg_user'"),
    "set-nested-deeply": option(
        "--set", "reg_user=" + "[" * 5000 + "]" * 5000, expect="parameter 'reg_user'"
    ),
    "max-memory-text": option("--max-memory", "lots", expect="--max-memory 'lots'"),
    "max-memory-negative": option("--max-memory", "-1GB", expect="--max-memory '-1GB'"),
    "max-memory-zero": option("--max-memory", "0", expect="--max-memory '0'"),
    "max-memory-unknown-unit": option("--max-memory", "8XB", expect="--max-memory '8XB'"),
    "max-memory-below-the-model": option(
        "--max-memory", "1KB", model="biased-mf", expect="1 kB limit (--max-memory)"
    ),
    "unknown-model": option(expect="unknown model 'nope'", model="nope"),
    "unknown-option": option("--bogus", expect="--bogus"),
    "no-model": command("train", "--data", "{good}", "--out", "{out}", expect="train needs a MODEL"),
    "item-docs-without-metadata": lambda w: (
        train(w, "--item-docs", w.file("docs.txt", "1::a plot\n")),
        "item documents need item metadata",
    ),
    "resume-and-overwrite": lambda w: (
        ["train", "--resume", w.run(), "--overwrite", "-q"],
        "--resume and --overwrite are exclusive",
    ),
    "resume-of-nothing": lambda w: (["train", "--resume", w.root / "nothing", "-q"], "not a run directory"),
    "unknown-command": command("nope", expect="nope"),
    "k-0": lambda w: (["recommend", w.run(), "--user", "1", "-k", "0"], "'-k'"),
    "k-as-power": lambda w: (["recommend", w.run(), "--user", "1", "-k", "10**12"], "'-k'"),
    "offset-negative": lambda w: (["recommend", w.run(), "--user", "1", "--offset", "-1"], "'--offset'"),
    "diversity-nan": lambda w: (["recommend", w.run(), "--user", "1", "--diversity", "nan"], "diversity"),
    "port-past-65535": lambda w: (["serve", w.run(), "--port", "70000"], "'--port'"),
    "predict-without-item": lambda w: (["predict", w.run(), "--user", "1"], "'--item'"),
    "predict-unknown-user": lambda w: (["predict", w.run(), "--user", "999", "--item", "1"], "user 999"),
    "predict-unknown-item": lambda w: (["predict", w.run(), "--user", "1", "--item", "999"], "item 999"),
    "recommend-unknown-user": lambda w: (["recommend", w.run(), "--user", "abc"], "user 'abc'"),
    "recommend-neither-user-nor-ratings": lambda w: (["recommend", w.run()], "exactly one of"),
    "recommend-unknown-genre": lambda w: (["recommend", w.run(), "--user", "1", "--genre", "Opera"], "Opera"),
    "recommend-unknown-exclude": lambda w: (
        ["recommend", w.run(), "--user", "1", "--exclude", "999"],
        "item 999",
    ),
    "ratings-malformed": lambda w: (["recommend", w.run(), "--ratings", "1:x"], "--ratings '1:x'"),
    "ratings-nan": lambda w: (["recommend", w.run(), "--ratings", "1:nan"], "item 1 rated nan"),
    "ratings-unknown-item": lambda w: (["recommend", w.run(), "--ratings", "999:5"], "item 999"),
    "similar-unknown-item": lambda w: (["similar", w.run(), "--item", "999"], "item 999"),
    "synth-unknown-shape": command("synth", "ml-5k", "--out", "{out}", expect="unknown synth shape"),
    "synth-negative-noise": command("synth", "ml-100k", "--out", "{out}", "--noise", "-1", expect="--noise"),
    "tune-0-trials": tune("--trials", "0", expect="--trials 0"),
    "tune-negative-timeout": tune("--trials", "1", "--timeout", "-1", expect="--timeout -1"),
    "tune-bad-storage": tune("--trials", "1", "--storage", "nosuchdb://x", expect="--storage nosuchdb://x"),
    "bench-text-seeds": bench("bias", "--seeds", "a,b", expect="--seeds 'a,b'"),
    "bench-negative-seed": bench("bias", "--seeds", "-1", expect="--seeds '-1'"),
    "bench-unknown-suite": bench("--suite", "nope", expect="nope"),
    "bench-unknown-peer": bench("bias", "--peers", "nope", expect="nope"),
    "fetch-unknown-dataset": command("fetch", "ml-5k", expect="ml-5k"),
}

CONFIGS: dict[str, Case] = {
    "config-utf-16": config("model: bias\nseed: 1\n".encode("utf-16"), expect="{file}"),
    "config-latin-1": config("model: bias\n# résumé\n".encode("latin-1"), expect="{file}:2: not valid UTF-8"),
    "config-nul-bytes": config(b"model: bias\n\0\0\0\n", expect="{file}:2:"),
    "config-binary": config(bytes(range(256)) * 8, expect="{file}"),
    "config-gzip": config(gzip_of("model: bias\n"), expect="{file}"),
    "config-billion-laughs": config(laughs(), expect="{file}:4:"),
    "config-one-alias": config(
        "model: bias\nsplit: &s random:0.2\nparams: {epochs: 1}\nx: *s\n", expect="{file}:4:"
    ),
    "config-nested-deeply": config(
        "model: bias\nparams: " + "[" * 5000 + "]" * 5000 + "\n", expect="{file}:2:"
    ),
    "config-a-list": config("- model\n- bias\n", expect="{file}: expected a mapping"),
    "config-a-number": config("42\n", expect="{file}: expected a mapping"),
    "config-python-tag": config("model: !!python/object/apply:os.system ['true']\n", expect="{file}:1:"),
    "config-tab-indent": config("model: bias\nparams:\n\tepochs: 1\n", expect="{file}:3:"),
    "config-unknown-key": config("model: bias\nspilt: random:0.1\n", expect="unknown config field 'spilt'"),
    "config-unknown-read-key": config("model: bias\nread: {delimiter: ','}\n", expect="'read.delimiter'"),
    "config-params-a-list": config("model: bias\nparams: [1, 2]\n", expect="'params'"),
    "config-read-a-number": config("model: bias\nread: 5\n", expect="'read'"),
    "config-model-a-number": config("model: 5\n", expect="'model'"),
    "config-seed-text": config("model: bias\nseed: abc\n", expect="'seed'"),
    "config-seed-huge": config(f"model: bias\nseed: {10**30}\n", expect="'seed'"),
    "config-seed-overflowing-float": config("model: bias\nseed: 1.0e400\n", expect="'seed'"),
    "config-valid-fraction-nan": config("model: bias\nvalid_fraction: .nan\n", expect="'valid_fraction'"),
    "config-relevant-rating-nan": config("model: bias\nrelevant_rating: .nan\n", expect="'relevant_rating'"),
    "config-relevant-rating-inf": config("model: bias\nrelevant_rating: .inf\n", expect="'relevant_rating'"),
    "config-param-nan": config("model: bias\nparams: {reg_item: .nan}\n", expect="'reg_item'"),
    "config-max-memory-text": config("model: bias\nmax_memory: plenty\n", expect="'max_memory'"),
    "config-kfold-huge": config("model: bias\nsplit: kfold:1000000000\n", expect="split 'kfold:1000000000'"),
    "config-rating-scale-nan": config(
        "model: bias\nread: {rating_scale: [.nan, 5]}\n", expect="read.rating_scale"
    ),
}

PATHS: dict[str, Case] = {
    **{
        f"{role}-{kind}": special(kind, role)
        for role in ("data", "test-file", "config", "item-docs")
        for kind in ("missing", "folder", "device", "pipe")
        if (role, kind) != ("data", "folder")  # a folder is a dataset: a folder without ratings, below
    },
    "data-folder-without-ratings": lambda w: (train(w, data=w.root), f"{w.root}: no ratings file found"),
    "data-name-too-long": lambda w: (train(w, data=w.root / ("x" * 300)), "x" * 300),
    "data-folder-with-a-pipe-for-ratings": lambda w: (
        os.mkfifo(w.root / "ratings.csv") or train(w, data=w.root),
        f"{w.root}: no ratings file found",
    ),
    "out-inside-a-file": lambda w: (
        ["train", "bias", "--data", w.good(), "--out", w.root / "good.csv" / "run", *QUICK],
        str(w.root / "good.csv" / "run"),
    ),
    "out-a-file": lambda w: (
        ["train", "bias", "--data", w.good(), "--out", w.good("taken.csv"), *QUICK],
        "exists and is not a directory",
    ),
    "out-name-too-long": lambda w: (
        ["train", "bias", "--data", w.good(), "--out", w.root / ("x" * 300), *QUICK],
        "x" * 300,
    ),
    "resume-a-file": lambda w: (["train", "--resume", w.good(), "-q"], "good.csv"),
    "blend-a-file": lambda w: (["blend", w.good(), w.good("b.csv")], "good.csv"),
    "run-missing": lambda w: (["recommend", w.root / "nope", "--user", "1"], "nope: no such run directory"),
    "run-a-file": lambda w: (["recommend", w.good(), "--user", "1"], "good.csv"),
    "run-a-pipe": lambda w: (
        os.mkfifo(w.root / "pipe") or ["similar", w.root / "pipe", "--item", "1"],
        "pipe",
    ),
    "run-an-empty-folder": lambda w: (["serve", w.root], str(w.root)),
}

SIDE_FILES: dict[str, Case] = {
    "movies-csv-short-row": side(
        {"movies.csv": "movieId,title,genres\n1,A,Drama\n2\n"}, expect="{dir}/movies.csv:3: expected 3"
    ),
    "movies-csv-binary": side({"movies.csv": bytes(range(256)) * 16}, expect="{dir}/movies.csv"),
    "movies-csv-nul": side(
        {"movies.csv": "movieId,title,genres\n1,A,Drama\n2,B\0,Drama\n"}, expect="{dir}/movies.csv:3: a NUL"
    ),
    "movies-csv-200k-title": side(
        {"movies.csv": "movieId,title,genres\n1," + "A" * 200_000 + ",Drama\n"}, expect="{dir}/movies.csv:2:"
    ),
    "movies-csv-unterminated-quote": side(
        {"movies.csv": 'movieId,title,genres\n1,"A,Drama\n2,B,Drama\n'}, expect="{dir}/movies.csv"
    ),
    "movies-csv-header-only": side(
        {"movies.csv": "movieId,title,genres\n"}, expect="not listed in the dataset's item file"
    ),
    "tags-csv-missing-column": side(
        {"tags.csv": "userId,movieId,label\n1,1,fun\n"}, expect="{dir}/tags.csv: Column 'tag'"
    ),
    "tags-csv-ragged": side(
        {"tags.csv": "userId,movieId,tag,timestamp\n1,1,fun,1\n1,2\n"}, expect="{dir}/tags.csv:3:"
    ),
    "genome-scores-garbage": side(
        {"genome-scores.csv": "movieId,tagId\nx,y\n", "genome-tags.csv": "tagId,tag\n1,fun\n"},
        expect="{dir}/genome-scores.csv",
    ),
    "genome-tag-unknown": side(
        {"genome-scores.csv": "movieId,tagId,relevance\n1,7,0.5\n", "genome-tags.csv": "tagId,tag\n1,fun\n"},
        expect="{dir}/genome-scores.csv: tag 7 is not in genome-tags.csv",
    ),
    "users-dat-ragged": lambda w: (
        train(w, data=w.ml_1m(users="1::M::25::7::12345\n2::F\n")),
        f"{w.root / 'ml1m' / 'users.dat'}:2: expected 5",
    ),
    "u-user-age-text": lambda w: (
        train(w, data=w.ml_100k(user="1|old|M|writer|12345\n")),
        f"{w.root / 'ml100k' / 'u.user'}:1: field 2 'old' is not a whole number",
    ),
    "u-item-short-row": lambda w: (
        train(w, data=w.ml_100k(item="1|A (1990)|01-Jan-1990\n")),
        f"{w.root / 'ml100k' / 'u.item'}:1:",
    ),
    "item-docs-line-without-separator": docs(
        "1::a plot\nno separator here\n", expect="{file}:2: expected 'item_id::text'"
    ),
    "item-docs-binary": docs(bytes(range(256)) * 16, expect="{file}:1:"),
    "item-docs-nul": docs("1::a plot\n2::a\0plot\n", expect="{file}:2: a NUL character"),
    "item-docs-no-known-item": docs("999::a plot\n", expect="{file}: no line names an item"),
}


RECOMMEND = ("recommend", "RUN", "--user", "1")
RUNS: dict[str, Case] = {
    "run-config-garbage": damaged(CONFIG, bytes(range(256)) * 8, *RECOMMEND, expect="{file}"),
    "run-config-utf-16": damaged(CONFIG, "model: biased-mf\n".encode("utf-16"), *RECOMMEND, expect="{file}"),
    "run-config-billion-laughs": damaged(CONFIG, laughs(), "serve", "RUN", expect="{file}:4:"),
    "run-config-a-list": damaged(CONFIG, "- 1\n", *RECOMMEND, expect="{file}"),
    "run-config-unknown-model": damaged(CONFIG, "model: nope\n", *RECOMMEND, expect="{file}: unknown model"),
    "run-config-huge-factors": damaged(
        CONFIG,
        "model: biased-mf\nparams: {factors: 100000000}\n",
        "serve",
        "RUN",
        expect="{file}: biased-mf: ",
    ),
    "run-config-billion-laughs-on-resume": damaged(
        CONFIG, laughs(), "train", "--resume", "RUN", expect="{file}:4:"
    ),
    "run-config-missing": damaged(CONFIG, None, *RECOMMEND, expect="{run}"),
    "run-weights-garbage": damaged(WEIGHTS, bytes(range(256)) * 8, *RECOMMEND, expect="{file}"),
    "run-weights-a-zip-of-text": damaged(WEIGHTS, zip_of("hello"), *RECOMMEND, expect="{file}"),
    "run-weights-missing": damaged(WEIGHTS, None, "similar", "RUN", "--item", "1", expect="{file}"),
    "run-manifest-not-json": damaged(MANIFEST, "{", *RECOMMEND, expect="{file}"),
    "run-manifest-a-list": damaged(MANIFEST, "[1, 2]", *RECOMMEND, expect="{file}"),
    "run-manifest-future-format": damaged(
        MANIFEST, '{"format": 99, "scale": {"low": 1, "high": 5, "step": 1}}', *RECOMMEND, expect="{file}"
    ),
    "run-manifest-scale-text": damaged(
        MANIFEST, '{"format": 1, "scale": {"low": "a", "high": 5, "step": 1}}', *RECOMMEND, expect="{file}"
    ),
    "run-manifest-scale-nan": damaged(
        MANIFEST, '{"format": 1, "scale": {"low": NaN, "high": 5, "step": 1}}', *RECOMMEND, expect="{file}"
    ),
    "run-manifest-genres-a-number": damaged(
        MANIFEST,
        '{"format": 1, "scale": {"low": 1, "high": 5, "step": 1}, "genre_names": 5}',
        *RECOMMEND,
        expect="{file}",
    ),
    "run-ids-empty": damaged(ID_MAPS, b"", *RECOMMEND, expect="{file}"),
    "run-ids-wrong-arrays": damaged(ID_MAPS, npz(other=np.zeros(3)), *RECOMMEND, expect="{file}"),
    "run-items-wrong-arrays": damaged(ITEMS, npz(other=np.zeros(3)), *RECOMMEND, expect="{file}"),
    "run-seen-wrong-arrays": damaged(
        SEEN, npz(other=np.zeros(3)), "predict", "RUN", "--user", "1", "--item", "1", expect="{file}"
    ),
    "run-seen-garbage": damaged(SEEN, bytes(range(256)), *RECOMMEND, expect="{file}"),
    "run-summary-garbage": damaged(SUMMARY, "{", *RECOMMEND, expect="{file}"),
}

CORPUS = {**FILES, **OPTIONS, **CONFIGS, **PATHS, **SIDE_FILES, **RUNS}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished biased-mf run with item metadata, to copy and damage."""
    root = tmp_path_factory.mktemp("trained")
    folder = root / "data"
    folder.mkdir()
    write_ratings(folder / "ratings.csv", n_users=12, n_items=15, density=0.5)
    write_movies(folder / "movies.csv", 15, GENRES)
    config = build_config({"model": "biased-mf", "data": str(folder), "params": {"epochs": 1, "factors": 4}})
    experiment.run(config, root / "run", quiet=True)
    return root / "run"


def test_the_corpus_is_large_and_covers_every_class():
    assert len(CORPUS) >= 100
    assert min(map(len, (FILES, OPTIONS, CONFIGS, PATHS, SIDE_FILES, RUNS))) >= 10


@pytest.mark.timeout(60)  # a read of a pipe or a device would block: fail, not hang
@pytest.mark.parametrize("case", CORPUS)
def test_hostile_input_is_one_error_line_and_writes_nothing(
    case, tmp_path, trained, deepmovie, deepmovie_home
):
    workspace = Workspace(tmp_path / "case", trained)
    workspace.root.mkdir()
    args, expected = CORPUS[case](workspace)
    before = snapshot(tmp_path), snapshot(deepmovie_home)
    assert_one_error_line(deepmovie(*args), expected)
    assert (snapshot(tmp_path), snapshot(deepmovie_home)) == before
