"""Atomic checkpoint files: a crash mid-write never replaces the last good checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from deepmovie.errors import DeepMovieError
from deepmovie.files import regular_file, write_atomic


def save_atomic(obj: Any, path: Path) -> None:
    write_atomic(path, lambda handle: torch.save(obj, handle))


def load_weights(path: Path) -> Any:
    """Load tensors and plain containers only (``weights_only``): no arbitrary code is unpickled."""
    regular_file(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign file: say which, in the first line of torch's paragraph
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DeepMovieError(f"{path}: not a readable checkpoint ({first})") from None
