"""One way to write a file: a temporary beside it, flushed to disk, then renamed over it.

A crash or kill mid-write leaves the previous file (or none), never half of one; a stale temporary
carries the writer's pid, so it never collides with another writer's, and whoever next claims the
folder knows whether its writer is gone (:func:`remove_stale_temporaries`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # matplotlib is imported only by the modules that draw
    from matplotlib.figure import Figure

TEMPORARY = re.compile(r"\.(?P<name>.+)\.tmp(?P<pid>\d+)")  # what _temporary names


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(handle)`` on a temporary beside ``path``, fsync it, then rename it to ``path``."""
    path = Path(path)
    tmp = _temporary(path)
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    write_atomic(path, lambda handle: handle.write(text.encode("utf-8")))


def write_arrays(path: Path, *, compress: bool = False, **arrays: np.ndarray) -> None:
    """``np.savez`` (or ``savez_compressed``) to ``path`` (no ``.npz`` appended), atomically."""
    save = np.savez_compressed if compress else np.savez
    write_atomic(path, lambda handle: save(handle, **arrays))


def write_figure(path: Path, figure: Figure, dpi: int) -> None:
    """A matplotlib figure, in the format ``path``'s suffix names, atomically."""
    write_atomic(path, lambda handle: figure.savefig(handle, format=path.suffix.lstrip("."), dpi=dpi))


def remove_stale_temporaries(folder: Path) -> None:
    """Remove the temporaries under ``folder`` that no writer will rename any more."""
    for path in folder.rglob(".*.tmp*"):
        if is_stale_temporary(path):
            path.unlink(missing_ok=True)


def is_stale_temporary(path: Path) -> bool:
    """Whether ``path`` is a temporary of :func:`write_atomic` whose writer is gone: its pid is no live
    process's (the writer was killed), or is this process's own (a write never outlives its call, so
    the file is an earlier process's that had the same pid, as a restarted container's has). A
    temporary of another live process is not: that writer may still be at work."""
    match = TEMPORARY.fullmatch(path.name)
    if match is None or not path.is_file():
        return False
    pid = int(match["pid"])
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, as another user's
        return False
    except (OverflowError, OSError):  # a number no process can have
        return True
    return False
