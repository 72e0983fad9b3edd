"""Command-line interface (Typer). ``main`` turns user errors into one message and exit code 2."""

from __future__ import annotations

import logging
import os
import sys

import typer

from deepmovie.errors import DeepMovieError

# Click's exceptions as Typer raises them (recent Typer vendors its own copy of Click).
USAGE_ERROR = typer.BadParameter.__base__  # an unknown option or command, a value of the wrong type
CLICK_ERROR = USAGE_ERROR.__base__


def main() -> None:
    """Run the command in ``sys.argv``. A bad input, whether our check (:class:`DeepMovieError`) or
    Click's (an unknown option, a value of the wrong type), is one ``error:`` line and exit code 2."""
    from deepmovie.cli.app import app

    logging.basicConfig(format="%(levelname)s: %(message)s", level=logging.WARNING, stream=sys.stderr)
    if len(sys.argv) <= 1:
        app()  # a bare `deepmovie`: Typer's help, and its exit
    try:
        code = app(standalone_mode=False)
    except DeepMovieError as exc:
        _fail(str(exc))
    except USAGE_ERROR as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        _fail(exc.format_message() + hint)
    except CLICK_ERROR as exc:
        _fail(exc.format_message())
    except KeyboardInterrupt:
        print(
            "interrupted: a training run continues from its last checkpoint with "
            "`deepmovie train --resume RUN_DIR`",
            file=sys.stderr,
        )
        sys.exit(130)
    sys.exit(code or 0)


def _fail(message: str) -> None:
    """One ``error:`` line (a message that spans lines is joined) and exit code 2."""
    lines = [part.strip() for part in message.splitlines() if part.strip()]
    print("error: " + "; ".join(lines), file=sys.stderr)
    _exit_now(2)


def _exit_now(code: int) -> None:
    """Exit without interpreter teardown, which PyTorch's and PyArrow's worker threads occasionally
    abort (SIGABRT) when an error ends the program mid-way; everything we write is already closed."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
