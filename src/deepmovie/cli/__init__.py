"""Command-line interface (Typer). ``main`` turns user errors into one message and exit code 2."""

from __future__ import annotations

import logging
import os
import sys

from deepmovie.errors import DeepMovieError


def main() -> None:
    from deepmovie.cli.app import app

    logging.basicConfig(format="%(levelname)s: %(message)s", level=logging.WARNING, stream=sys.stderr)
    try:
        app()
    except DeepMovieError as exc:
        print(f"error: {exc}", file=sys.stderr)
        _exit_now(2)
    except KeyboardInterrupt:
        print(
            "interrupted: a training run continues from its last checkpoint with "
            "`deepmovie train --resume RUN_DIR`",
            file=sys.stderr,
        )
        sys.exit(130)


def _exit_now(code: int) -> None:
    """Exit without interpreter teardown, which PyTorch's and PyArrow's worker threads occasionally
    abort (SIGABRT) when an error ends the program mid-way; everything we write is already closed."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
