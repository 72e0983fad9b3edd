"""One exception type for every user-facing failure.

The CLI turns a :class:`DeepMovieError` into a one-line message and exit code 2; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations


class DeepMovieError(Exception):
    """Bad input or configuration: the message names the file, line or field at fault."""


def where(path: object, line: int | None = None) -> str:
    """Format a location the way compilers do: ``file:line``."""
    return f"{path}:{line}" if line is not None else str(path)
