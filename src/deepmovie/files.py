"""One way to write a file: a temporary beside it, flushed to disk, then renamed over it.

A crash or kill mid-write leaves the previous file (or none), never half of one; a stale temporary
carries the writer's pid, so it never collides with another writer's.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np


def write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(handle)`` on a temporary beside ``path``, fsync it, then rename it to ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
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


def write_arrays(path: Path, **arrays: np.ndarray) -> None:
    """``np.savez`` to ``path`` (no ``.npz`` appended), atomically."""
    write_atomic(path, lambda handle: np.savez(handle, **arrays))
