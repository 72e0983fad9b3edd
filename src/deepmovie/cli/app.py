"""The ``deepmovie`` commands; each mirrors a function of the Python API."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from deepmovie.cli.report import print_summary
from deepmovie.config import build_config, load_config_file, parse_assignments
from deepmovie.errors import DeepMovieError

app = typer.Typer(
    help="DeepMovie: train, compare and serve movie recommenders.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _quiet(quiet: bool) -> None:
    """Status lines go to a terminal only, like progress bars: piped output stays one error line."""
    verbose = not quiet and sys.stderr.isatty()
    logging.getLogger("deepmovie").setLevel(logging.INFO if verbose else logging.WARNING)


@app.command()
def models() -> None:
    """List the registered models and their parameters."""
    from deepmovie.models import MODELS

    for name, cls in MODELS.items():
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        typer.echo(f"{name:14s} {doc}")
        for field, info in cls.Params.model_fields.items():
            default = info.get_default(call_default_factory=True)
            typer.echo(f"    {field}={default!r}  {info.description or ''}".rstrip())


@app.command()
def datasets() -> None:
    """List the built-in dataset names and whether each is on disk."""
    from deepmovie.data import catalog

    for name, release in catalog.RELEASES.items():
        path = catalog.installed_path(name)
        status = (
            ("bundled" if name == catalog.DEFAULT_DATASET else "downloaded")
            if path
            else f"not downloaded (deepmovie fetch {name})"
        )
        typer.echo(f"{name:16s} {release.ratings:>18s} ratings  {status}")


@app.command()
def splits() -> None:
    """List the evaluation protocols (split specs)."""
    from deepmovie.splits import PROTOCOLS

    for name, protocol in PROTOCOLS.items():
        typer.echo(f"{name:14s} {(protocol.__doc__ or '').strip().splitlines()[0]}")


@app.command()
def fetch(
    name: Annotated[str, typer.Argument(help="dataset name, e.g. ml-1m (see `deepmovie datasets`)")],
    force: Annotated[bool, typer.Option(help="download again even if present")] = False,
    md5: Annotated[str | None, typer.Option(help="expected MD5 of the zip (e.g. for a mirror)")] = None,
    allow_unverified: Annotated[
        bool, typer.Option(help="accept a zip whose MD5 is known nowhere (not recommended)")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Download an official MovieLens zip into DEEPMOVIE_HOME, verify it and unpack it."""
    from deepmovie.data.fetch import fetch as fetch_release

    path = fetch_release(name, force=force, md5=md5, allow_unverified=allow_unverified, quiet=quiet)
    typer.echo(str(path))


@app.command()
def synth(
    shape: Annotated[str, typer.Argument(help="ml-100k, ml-1m, ml-10m or ml-20m")],
    out: Annotated[Path, typer.Option("--out", help="folder to write ratings.csv into")],
    seed: int = 0,
    noise: Annotated[float, typer.Option(help="std of the Gaussian noise: the RMSE floor")] = 0.8,
    scale: Annotated[str, typer.Option(help="rating scale: 'whole' (1..5) or 'half' (0.5..5)")] = "whole",
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Generate ratings with a known structure and noise floor, in a MovieLens dataset's shape."""
    from deepmovie.data.synth import synthesize

    report = synthesize(shape, out, seed=seed, noise=noise, scale=scale, quiet=quiet)
    typer.echo(report)


@app.command()
def train(
    model: Annotated[str | None, typer.Argument(help="model name (see `deepmovie models`)")] = None,
    data: Annotated[str | None, typer.Option(help="dataset name, folder or ratings file")] = None,
    split: Annotated[str | None, typer.Option(help="random:0.1, convmf, fold:u1, kfold:5, ...")] = None,
    test_file: Annotated[str | None, typer.Option(help="explicit test ratings; DATA is then train")] = None,
    item_docs: Annotated[str | None, typer.Option(help="ConvMF-style item_id::text file")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    config: Annotated[Path | None, typer.Option(help="YAML config (as written to RUN_DIR)")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="model parameter key=value")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda")] = None,
    valid_fraction: Annotated[
        float | None, typer.Option(help="share of train held out for validation")
    ] = None,
    sep: Annotated[str | None, typer.Option(help="delimiter of a generic ratings file")] = None,
    columns: Annotated[str | None, typer.Option(help="user=COL,item=COL,rating=COL[,timestamp=COL]")] = None,
    rating_scale: Annotated[str | None, typer.Option(help="LOW:HIGH of a generic ratings file")] = None,
    encoding: Annotated[
        str | None, typer.Option(help="text encoding of a generic file, e.g. latin-1")
    ] = None,
    header: Annotated[
        bool | None,
        typer.Option("--header/--no-header", help="whether the file has a header (default: detect)"),
    ] = None,
    rank_k: Annotated[
        int | None, typer.Option(help="also report top-K ranking metrics (HR, NDCG, ...)")
    ] = None,
    refit: Annotated[
        bool | None, typer.Option("--refit/--no-refit", help="retrain on train+valid for the best epochs")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="run directory to write")] = None,
    resume: Annotated[Path | None, typer.Option(help="continue the run in this directory")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Train a model, evaluate it on the test rows once, and write RUN_DIR."""
    from deepmovie.experiment import CONFIG, run

    _quiet(quiet)
    if resume is not None:
        run_config = build_config(load_config_file(resume / CONFIG))
        summary = run(run_config, resume, resume=True, quiet=quiet)
        print_summary(summary)
        return
    if model is None:
        raise DeepMovieError("train needs a MODEL (see `deepmovie models`) or --resume RUN_DIR")
    values: dict[str, Any] = load_config_file(config) if config else {}
    values["model"] = model
    given = {
        "data": data,
        "split": split,
        "test_file": test_file,
        "item_docs": item_docs,
        "seed": seed,
        "device": device,
        "valid_fraction": valid_fraction,
        "refit": refit,
        "rank_k": rank_k,
    }
    values.update({k: v for k, v in given.items() if v is not None})
    read = dict(values.get("read") or {})
    if sep is not None:
        read["sep"] = {"tab": "\t", "\\t": "\t"}.get(sep, sep)
    if columns is not None:
        read["columns"] = _pairs(columns, "--columns")
    if encoding is not None:
        read["encoding"] = encoding
    if header is not None:
        read["header"] = header
    if rating_scale is not None:
        low, _, high = rating_scale.partition(":")
        read["rating_scale"] = (low, high)
    values["read"] = read
    values["params"] = {**(values.get("params") or {}), **parse_assignments(set_ or [])}
    run_config = build_config(values)
    summary = run(run_config, out, quiet=quiet)
    print_summary(summary)


def _pairs(text: str, option: str) -> dict[str, str]:
    pairs = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise DeepMovieError(f"{option} {text!r}: expected role=column pairs")
        pairs[key.strip()] = value.strip()
    return pairs


RunDir = Annotated[Path, typer.Argument(help="a run directory written by `deepmovie train --out`")]
AsJson = Annotated[bool, typer.Option("--json", help="print the result as JSON")]


def _emit(result: Any, as_json: bool, lines: list[str]) -> None:
    typer.echo(result.model_dump_json(indent=2) if as_json else "\n".join(lines))


def _movie_line(rank: int, movie: Any, value: str) -> str:
    genres = "|".join(movie.genres)
    return f"{rank:3d}. {value:>6s}  {movie.item!s:>8s}  {movie.title or '-'}  {genres}".rstrip()


@app.command()
def predict(
    run: RunDir,
    user: Annotated[str, typer.Option(help="user id")],
    item: Annotated[str, typer.Option(help="item (movie) id")],
    as_json: AsJson = False,
) -> None:
    """Predict one user's rating of one item."""
    from deepmovie.serving.recommender import Recommender

    result = Recommender.load(run).predict(user, item)
    _emit(
        result, as_json, [f"{result.rating:.2f}  user {result.user}, {result.item.title or result.item.item}"]
    )


@app.command()
def recommend(
    run: RunDir,
    user: Annotated[str | None, typer.Option(help="a known user id")] = None,
    ratings: Annotated[
        str | None, typer.Option(help="a new user's ratings, item:rating pairs, e.g. 1:5,50:4,260:5")
    ] = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="how many items")] = 10,
    genre: Annotated[str | None, typer.Option(help="only items of this genre")] = None,
    min_year: Annotated[int | None, typer.Option(help="only items released this year or later")] = None,
    include_seen: Annotated[bool, typer.Option(help="keep items the user already rated")] = False,
    as_json: AsJson = False,
) -> None:
    """Top-K items for a known user (--user) or for a new one given by a few ratings (--ratings)."""
    from deepmovie.serving.recommender import Recommender, parse_ratings

    result = Recommender.load(run).recommend(
        user,
        ratings=parse_ratings(ratings) if ratings is not None else None,
        k=k,
        genre=genre,
        min_year=min_year,
        include_seen=include_seen,
    )
    who = f"user {result.user}" if result.user is not None else "a new user (cold start)"
    header = (
        f"top {len(result.items)} for {who}: {result.method}, {result.excluded_seen} rated item(s) left out"
    )
    lines = [_movie_line(n, m, f"{m.rating:.2f}") for n, m in enumerate(result.items, start=1)]
    _emit(result, as_json, [header, *lines])


@app.command()
def similar(
    run: RunDir,
    item: Annotated[str, typer.Option(help="item (movie) id")],
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="how many items")] = 10,
    as_json: AsJson = False,
) -> None:
    """The K items most similar to an item."""
    from deepmovie.serving.recommender import Recommender

    result = Recommender.load(run).similar(item, k=k)
    header = f"similar to {result.item.title or result.item.item} ({result.method}):"
    lines = [_movie_line(n, m, f"{m.similarity:.3f}") for n, m in enumerate(result.items, start=1)]
    _emit(result, as_json, [header, *lines])


@app.command()
def serve(
    run: RunDir,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="server processes (one model copy each)")] = 1,
) -> None:
    """Serve the REST API (docs at /docs) and the web page (/) of a run."""
    import os

    import uvicorn

    from deepmovie.serving.api import RUN_ENV, create_app
    from deepmovie.serving.recommender import Recommender

    recommender = Recommender.load(run)  # a bad run directory fails here, as one error line
    typer.echo(
        f"serving {run} ({recommender.model_name}) at http://{host}:{port}/  (API docs: /docs)", err=True
    )
    options: dict[str, Any] = {"host": host, "port": port, "log_level": "warning", "access_log": False}
    if workers == 1:
        uvicorn.run(create_app(recommender), **options)
    else:
        os.environ[RUN_ENV] = str(run.resolve())
        uvicorn.run("deepmovie.serving.api:app_from_env", factory=True, workers=workers, **options)
