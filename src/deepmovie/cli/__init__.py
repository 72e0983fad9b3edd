"""Command-line interface (Typer). ``main`` turns user errors into one message and exit code 2."""

from __future__ import annotations

import logging
import sys

from deepmovie.errors import DeepMovieError


def main() -> None:
    from deepmovie.cli.app import app

    logging.basicConfig(format="%(levelname)s: %(message)s", level=logging.WARNING, stream=sys.stderr)
    try:
        app()
    except DeepMovieError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(
            "interrupted: a training run continues from its last checkpoint with "
            "`deepmovie train --resume RUN_DIR`",
            file=sys.stderr,
        )
        sys.exit(130)
