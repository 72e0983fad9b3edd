"""The file names of a run directory, in one place, and the rules for taking an output folder.

A run directory holds its resolved config, per-epoch metrics, a resumable checkpoint, the final
weights, the raw id maps, the serving artifacts (manifest, item and user metadata, the seen ratings
per fold) and the summary. A k-fold run has one ``fold-N`` directory per fold for the per-fold files.

Every command that writes a folder claims it first (:func:`claim_run` for a run, :func:`claim` for a
bench, a study or a blend): a folder of other files, or a run of another config, is refused unless
``overwrite`` says to replace it, and the temporaries a killed writer left are removed. Every file is
then written through :mod:`deepmovie.files`, so a file that does not parse was cut or changed by
something else: :func:`check_files` names it.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from deepmovie.errors import DeepMovieError
from deepmovie.files import is_stale_temporary, load_yaml, path_kind, remove_stale_temporaries, write_text

CONFIG = "config.yaml"  # the fully resolved RunConfig
METRICS = "metrics.jsonl"  # one line per epoch
CHECKPOINT = "checkpoint.pt"  # written atomically each epoch; what --resume reads
WEIGHTS = "model.pt"  # {"format": 1, "model": name, "state": state_dict}
ID_MAPS = "ids.npz"  # raw user and item ids by index
SUMMARY = "summary.json"  # test figures, timings, machine, config
MANIFEST = "serving.json"  # serving format version, rating scale, genre names, user vocabularies
ITEMS = "items.npz"  # titles, years, genres, documents
USERS = "users.npz"  # user feature codes
SEEN = "seen.npz"  # per fold: the train + valid ratings as CSR, and the training mean
REFIT = "refit"  # per fold: the refit's checkpoint and metrics
FOLD_PREFIX = "fold-"
RUN_FILES = (CONFIG, METRICS, CHECKPOINT, WEIGHTS, ID_MAPS, SUMMARY, MANIFEST, ITEMS, USERS, SEEN)
SHOWN = 4  # entries of a refused folder named in its message
LIMITS = {"max_memory"}  # config fields that bound a run without being part of what it is


def claim(out: Path, marks: Iterable[str], what: str, *, overwrite: bool = False) -> bool:
    """Take ``out`` for writing: new, empty, already ``what`` (it holds one of ``marks``), or, with
    ``overwrite``, any folder. Whether it already was ``what`` (output to continue).

    Decided before anything is touched, so a refused folder is left exactly as it was; a taken one
    loses only its stale temporaries.
    """
    kind = path_kind(out)
    if kind not in (None, "folder"):
        raise DeepMovieError(f"{out}: exists and is not a directory")
    held = kind == "folder" and any((out / mark).exists() for mark in marks)
    entries = sorted(p.name for p in out.iterdir() if not is_stale_temporary(p)) if kind else []
    if entries and not held and not overwrite:
        shown = ", ".join(entries[:SHOWN]) + (
            f" and {len(entries) - SHOWN} more" if len(entries) > SHOWN else ""
        )
        raise DeepMovieError(
            f"{out}: not empty and not {what} (holds {shown}); choose another --out, "
            "or pass --overwrite to write into it"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a parent that is a file, a name too long, a folder we may not write in
        raise DeepMovieError(f"{out}: cannot be made a folder ({exc.strerror})") from None
    remove_stale_temporaries(out)
    return held


def claim_run(out: Path, config: str, *, overwrite: bool = False, resume: bool = False) -> None:
    """Take ``out`` for the run whose ``config.yaml`` is ``config`` (YAML text), and write that first,
    so that a run killed at once is still known as one.

    A new or empty folder is taken. A run already there is refused unless ``resume`` (continue it: its
    files must be whole, and the caller checks it is of this config) or ``overwrite`` (replace it: its
    files are removed, no others). Any other non-empty folder is refused unless ``overwrite``. On
    resume ``config.yaml`` is written again as this deepmovie resolves it, to agree with the summary
    the run will write.
    """
    if resume and overwrite:
        raise DeepMovieError("--resume and --overwrite are exclusive: continue the run, or replace it")
    if resume:
        if not (out / CONFIG).is_file():
            raise DeepMovieError(f"{out}: no run to resume (no {CONFIG})")
        remove_stale_temporaries(out)
        check_files(out)
        write_text(out / CONFIG, config)
        return
    found = _run_config(out)
    if found is not None and not overwrite:
        raise DeepMovieError(_held(out, found, load_yaml(config)))
    claim(out, (), "a DeepMovie run", overwrite=overwrite)
    for folder in reversed(_run_folders(out)):  # an earlier run's files, deepest first
        for name in RUN_FILES:
            (folder / name).unlink(missing_ok=True)
        if folder != out and not any(folder.iterdir()):
            folder.rmdir()
    write_text(out / CONFIG, config)


def check_files(out: Path) -> None:
    """Name the first run file under ``out`` that is not whole: empty, JSON or YAML that does not
    parse, a zip archive (``.npz``, ``.pt``) failing its checksums, or a ``config.yaml`` that
    disagrees with the copy in a finished run's summary (YAML cut at a line's end still parses)."""
    for folder in _run_folders(out):
        for name in RUN_FILES:
            path = folder / name
            if path.is_file() and (problem := _problem(path)) is not None:
                raise DeepMovieError(
                    f"{path}: damaged ({problem}); remove it to have the run write it again, "
                    "or pass --overwrite to start the run afresh"
                )
    config, summary = out / CONFIG, read_summary(out)
    if config.is_file() and summary is not None and summary.get("config") is not None:
        differ = differing(load_yaml(config.read_text()), summary["config"])
        if differ:
            raise DeepMovieError(
                f"{config}: disagrees with the config in {SUMMARY} ({', '.join(differ)} differ); "
                "one of them is damaged"
            )


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``summary.json``; None when it has none (it did not finish)."""
    path = run_dir / SUMMARY
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text())
    except (ValueError, OSError) as exc:
        raise DeepMovieError(f"{path}: not a readable summary ({exc})") from None
    if not isinstance(summary, dict):
        raise DeepMovieError(f"{path}: not a readable summary (a JSON {type(summary).__name__})")
    return summary


def differing(found: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """The fields two configs disagree on, as JSON reads them back (a tuple equals its list). Limits
    (:data:`LIMITS`) are left out: they may refuse a run, never change what it computes."""
    found, wanted = json.loads(json.dumps(found)), json.loads(json.dumps(wanted))
    return sorted(k for k in (found.keys() | wanted.keys()) - LIMITS if found.get(k) != wanted.get(k))


def _run_config(out: Path) -> dict[str, Any] | None:
    """The config a run directory's ``config.yaml`` holds; None where there is no readable one that
    names a model (no run, a damaged one, or another program's file)."""
    try:
        values = load_yaml((out / CONFIG).read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return None
    return values if isinstance(values, dict) and "model" in values else None


def _held(out: Path, found: dict[str, Any], wanted: dict[str, Any]) -> str:
    """Why the run at ``out`` (of config ``found``) is not taken for a run of ``wanted``, and what to do."""
    differ = differing(found, wanted)
    if not differ:
        return (
            f"{out}: already holds a run of {found['model']!r}; pass --resume {out} to continue it, "
            "or --overwrite to replace it"
        )
    if "model" in differ:
        what = f"{found['model']!r}, not of {wanted['model']!r}"
    else:
        what = f"another config ({', '.join(differ)} differ)"
    return f"{out}: holds a run of {what}; choose another --out, or pass --overwrite to replace it"


def _run_folders(out: Path) -> list[Path]:
    """``out`` and the folders a run keeps in it (each fold's, each refit's), parents first."""
    folds = sorted(p for p in out.glob(f"{FOLD_PREFIX}*") if p.is_dir())
    return [f for base in (out, *folds) for f in (base, base / REFIT) if f.is_dir()]


def _problem(path: Path) -> str | None:
    """What is wrong with a run file, or None: text parsed as its reader parses it, archives checksummed."""
    try:
        if path.stat().st_size == 0:
            return "empty"
        if path.suffix in (".npz", ".pt"):
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
            return f"{bad} fails its checksum" if bad is not None else None
        text = path.read_text()
        if path.suffix == ".yaml":
            values = load_yaml(text)
            return None if isinstance(values, dict) else "not a mapping"
        for line in text.splitlines() if path.suffix == ".jsonl" else [text]:
            if line.strip():
                json.loads(line)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, yaml.YAMLError) as exc:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None
