"""One way to write a file, and the checks before reading one a user named.

Writing: a temporary beside the file, flushed to disk, then renamed over it. A crash or kill
mid-write leaves the previous file (or none), never half of one; a stale temporary carries the
writer's pid, so it never collides with another writer's, and whoever next claims the folder knows
whether its writer is gone (:func:`remove_stale_temporaries`).

Reading: a path is looked at before it is opened (:func:`regular_file`: a device or a pipe is never
read), and YAML is read without aliases and without deep nesting (:func:`load_yaml`).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

import numpy as np
import yaml

from deepmovie.errors import DeepMovieError

if TYPE_CHECKING:  # matplotlib is imported only by the modules that draw
    from matplotlib.figure import Figure

TEMPORARY = re.compile(r"\.(?P<name>.+)\.tmp(?P<pid>\d+)")  # what _temporary names
YAML_DEPTH = 32  # nesting a config may have; PyYAML composes recursively and overflows the stack at ~300
PathKind = Literal["file", "folder", "other"]


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


def path_kind(path: Path) -> PathKind | None:
    """What is at ``path``: a regular file, a folder, something else (a device, pipe or socket), or
    nothing (None). A path the system cannot look up (a name too long, a parent it may not enter) is
    refused naming it."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise DeepMovieError(f"{path}: cannot be looked up ({exc.strerror})") from None
    except ValueError as exc:  # a NUL character in the name
        raise DeepMovieError(f"{path!r}: not a usable path ({exc})") from None
    return "file" if stat.S_ISREG(mode) else "folder" if stat.S_ISDIR(mode) else "other"


def regular_file(path: Path) -> Path:
    """``path``, once it is known to be a regular file: a missing path, a folder, and a device or a
    pipe are refused before anything opens them (/dev/zero never ends, a FIFO blocks until a writer
    comes)."""
    kind = path_kind(path)
    if kind != "file":
        problem = {
            None: "no such file",
            "folder": "a folder, not a file",
            "other": "not a regular file (a device, pipe or socket); give a file",
        }[kind]
        raise DeepMovieError(f"{path}: {problem}")
    return Path(path)


class _PlainLoader(yaml.SafeLoader):
    """YAML's safe subset without aliases and nested at most :data:`YAML_DEPTH` deep. A few lines of
    anchors and aliases stand for billions of nodes (the "billion laughs") once anything walks them,
    and no config needs them; deep nesting overflows the composer's recursion."""

    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        mark = self.peek_event().start_mark
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed", mark)
        if self.depth >= YAML_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested deeper than {YAML_DEPTH} levels", mark)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def load_yaml(text: str) -> Any:
    """``text`` as plain data (mappings, lists, scalars); a :class:`yaml.YAMLError` where it is not
    YAML, or uses aliases or deep nesting."""
    return yaml.load(text, Loader=_PlainLoader)
