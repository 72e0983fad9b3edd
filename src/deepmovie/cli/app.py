"""The ``deepmovie`` commands; each mirrors a function of the Python API."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from deepmovie.cli.report import print_summary
from deepmovie.config import build_config, load_config_file, parse_assignments, with_section
from deepmovie.errors import DeepMovieError

app = typer.Typer(
    help="DeepMovie: train, compare and serve movie recommenders.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Options several commands share, declared once.
Data = Annotated[str | None, typer.Option(help="dataset name, folder or ratings file")]
Split = Annotated[str | None, typer.Option(help="random:0.1, convmf, fold:u1, kfold:5:1, ...")]
TestFile = Annotated[str | None, typer.Option(help="explicit test ratings; DATA is then train")]
Seed = Annotated[int | None, typer.Option(help="seed of the split, initialisation and batches")]
Sets = Annotated[list[str] | None, typer.Option("--set", help="model parameter key=value (repeatable)")]
Device = Annotated[str | None, typer.Option(help="auto, cpu or cuda")]
ConfigFile = Annotated[Path | None, typer.Option(help="YAML config (as written to a run directory)")]
MaxMemory = Annotated[
    str | None,
    typer.Option(help="memory a model may take (weights, gradients, optimizer), e.g. 8GB; default: 80% free"),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q")]
Jobs = Annotated[int, typer.Option(help="trials run at once (worker processes)")]
TrialsValid = Annotated[float | None, typer.Option(help="share of train that scores trials")]
Overwrite = Annotated[
    bool,
    typer.Option(
        "--overwrite", help="take --out even if it holds other files or another run (which is replaced)"
    ),
]


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
    quiet: Quiet = False,
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
    quiet: Quiet = False,
) -> None:
    """Generate ratings with a known structure and noise floor, in a MovieLens dataset's shape."""
    from deepmovie.data.synth import synthesize

    report = synthesize(shape, out, seed=seed, noise=noise, scale=scale, quiet=quiet)
    typer.echo(report)


@app.command()
def train(
    model: Annotated[str | None, typer.Argument(help="model name (see `deepmovie models`)")] = None,
    data: Data = None,
    split: Split = None,
    test_file: TestFile = None,
    item_docs: Annotated[
        str | None,
        typer.Option(
            help="item documents: an item_id::text file (ConvMF) or a movieId/source/text TSV (plots.tsv)"
        ),
    ] = None,
    item_docs_with_metadata: Annotated[
        bool | None,
        typer.Option(
            "--item-docs-with-metadata/--item-docs-only",
            help="put each item's title, year, genres and tags before its --item-docs text, or not",
        ),
    ] = None,
    seed: Seed = None,
    config: ConfigFile = None,
    set_: Sets = None,
    device: Device = None,
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
    max_memory: MaxMemory = None,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Train a model, evaluate it on the test rows once, and write RUN_DIR (under torchrun: data
    parallel over the ranks, rank 0 writes and prints)."""
    from deepmovie.engine import distributed

    distributed.start(device or "auto")
    _quiet(quiet or not distributed.is_main())
    from deepmovie.experiment import run
    from deepmovie.recommender.artifacts import read_config

    if resume is not None:
        resumed = read_config(resume)
        if max_memory is not None:  # a limit, not part of the run: it may change when the run resumes
            resumed = resumed.model_copy(update={"max_memory": _bytes(max_memory)})
        summary = run(resumed, resume, resume=True, overwrite=overwrite, quiet=quiet)
        _print_summary(summary)
        return
    values: dict[str, Any] = load_config_file(config) if config else {}
    if model is not None:
        values["model"] = model
    if "model" not in values:
        raise DeepMovieError(
            "train needs a MODEL (see `deepmovie models`), a --config that names one, or --resume RUN_DIR"
        )
    given = {
        "data": data,
        "split": split,
        "test_file": test_file,
        "item_docs": item_docs,
        "item_docs_with_metadata": item_docs_with_metadata,
        "seed": seed,
        "device": device,
        "valid_fraction": valid_fraction,
        "refit": refit,
        "rank_k": rank_k,
        "max_memory": _bytes(max_memory),
    }
    values.update({k: v for k, v in given.items() if v is not None})
    read: dict[str, Any] = {}
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
    values = with_section(with_section(values, "read", read), "params", parse_assignments(set_ or []))
    run_config = build_config(values)
    summary = run(run_config, out, overwrite=overwrite, quiet=quiet)
    _print_summary(summary)


def _print_summary(summary: dict) -> None:
    """Only rank 0 of a torchrun launch prints (the others ran quiet)."""
    from deepmovie.engine import distributed

    if distributed.is_main():
        print_summary(summary)


def _bytes(max_memory: str | None) -> int | None:
    """``--max-memory`` in bytes (None: not given)."""
    if max_memory is None:
        return None
    from deepmovie.machine import parse_size

    try:
        return parse_size(max_memory)
    except ValueError as exc:
        raise DeepMovieError(f"--max-memory {max_memory!r}: {exc}") from None


def _pairs(text: str, option: str) -> dict[str, str]:
    pairs = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise DeepMovieError(f"{option} {text!r}: expected role=column pairs")
        pairs[key.strip()] = value.strip()
    return pairs


@app.command()
def tune(
    model: Annotated[str, typer.Argument(help="model name (see `deepmovie models`)")],
    trials: Annotated[int, typer.Option(help="trials to add to the study")],
    out: Annotated[Path, typer.Option(help="folder for best.yaml, study.md (and study.db by default)")],
    data: Data = None,
    split: Split = None,
    test_file: TestFile = None,
    seed: Seed = None,
    config: ConfigFile = None,
    set_: Sets = None,
    device: Device = None,
    valid_fraction: TrialsValid = None,
    refit: Annotated[
        bool | None, typer.Option("--refit/--no-refit", help="best.yaml retrains on train+valid")
    ] = None,
    jobs: Jobs = 1,
    study: Annotated[str | None, typer.Option(help="study name (default: the model)")] = None,
    storage: Annotated[str | None, typer.Option(help="Optuna storage URL (default: sqlite in --out)")] = None,
    timeout: Annotated[
        float | None, typer.Option(help="stop starting trials after this many seconds")
    ] = None,
    max_memory: MaxMemory = None,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Search MODEL's hyperparameters on the validation rows (never the test rows); write best.yaml."""
    import shlex

    from deepmovie.tuning import tune as run_tune

    _quiet(quiet)
    values: dict[str, Any] = load_config_file(config) if config else {}
    given = {
        "model": model,
        "data": data,
        "split": split,
        "test_file": test_file,
        "seed": seed,
        "device": device,
        "valid_fraction": valid_fraction,
        "refit": refit,
        "max_memory": _bytes(max_memory),
    }
    values.update({k: v for k, v in given.items() if v is not None})
    values = with_section(values, "params", parse_assignments(set_ or []))
    summary = run_tune(
        build_config(values),
        out,
        trials,
        jobs=jobs,
        study_name=study,
        storage=storage,
        timeout=timeout,
        command="deepmovie " + shlex.join(sys.argv[1:]),
        overwrite=overwrite,
        quiet=quiet or not sys.stderr.isatty(),
    )
    typer.echo(
        f"best {summary['monitor']} {summary['best_value']:.4f} (trial {summary['best_trial']}, epoch "
        f"{summary['best_epoch']}); trials: "
        + ", ".join(f"{v} {k}" for k, v in summary["trials"].items() if v)
        + f"\n{out / 'best.yaml'}  {out / 'study.md'}"
    )


@app.command()
def auto(
    out: Annotated[Path, typer.Option(help="folder for the result (OUT/best), leaderboard and studies")],
    data: Data = None,
    split: Split = None,
    test_file: TestFile = None,
    task: Annotated[
        str | None, typer.Option(help="rating or ranking (default: from the data; 0/1 data is ranking)")
    ] = None,
    budget: Annotated[str, typer.Option(help="wall time to spend, e.g. 30m, 90s, 1h30m")] = "30m",
    jobs: Jobs = 1,
    seed: Seed = None,
    valid_fraction: TrialsValid = None,
    device: Device = None,
    max_memory: MaxMemory = None,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Find the best model for DATA in a time budget: search, refit, blend; OUT/best is servable."""
    import shlex

    from deepmovie.auto import auto as run_auto
    from deepmovie.auto import parse_budget

    _quiet(quiet)
    if task not in (None, "rating", "ranking"):
        raise DeepMovieError(f"--task {task!r}: choose rating or ranking")
    given = {
        "model": "bias",  # each candidate replaces it
        "data": data,
        "split": split,
        "test_file": test_file,
        "seed": seed,
        "device": device,
        "valid_fraction": valid_fraction,
        "max_memory": _bytes(max_memory),
    }
    summary = run_auto(
        build_config({k: v for k, v in given.items() if v is not None}),
        out,
        budget=parse_budget(budget),
        task=task,
        jobs=jobs,
        command="deepmovie " + shlex.join(sys.argv[1:]),
        overwrite=overwrite,
        quiet=quiet or not sys.stderr.isatty(),
    )
    result = summary["result"]
    figures = ", ".join(f"{k} {v:.4f}" for k, v in result.items() if k.startswith(("test_", "valid_")) and v)
    typer.echo(
        f"{result['kind']}: {figures}; {summary['wall_seconds']:.0f} s of {summary['budget_seconds']:.0f} s"
        f"\nserve it: deepmovie serve {result['run']}\n{out / 'auto.md'}  {out / 'leaderboard.md'}"
    )


@app.command()
def blend(
    runs: Annotated[list[Path], typer.Argument(help="run directories (trained without --refit)")],
    out: Annotated[
        Path | None, typer.Option(help="folder for the blend: a servable run directory, with blend.md")
    ] = None,
    twin: Annotated[
        list[Path] | None,
        typer.Option(help="a member's --refit twin for the test predictions (one per member, in order)"),
    ] = None,
    ridge: Annotated[float, typer.Option(help="L2 on the weights, per validation row")] = 1e-4,
    overwrite: Overwrite = False,
) -> None:
    """Blend runs: weights fitted on the validation rows, scored once on the test rows; --out is then
    a run directory of the blend (deepmovie serve OUT, recommend OUT ...)."""
    import shlex

    from deepmovie.blend import blend as run_blend

    command = "deepmovie " + shlex.join(sys.argv[1:])
    summary = run_blend(runs, out, twins=twin, ridge=ridge, command=command, overwrite=overwrite)
    for m in summary["members"]:
        typer.echo(
            f"{m['model']:12s} weight {m['weight']:+.4f}  valid RMSE {m['valid_rmse']:.4f}  "
            f"test RMSE {m['test_rmse']:.4f}  {m['run']}"
        )
    typer.echo(
        f"{'blend':12s} intercept {summary['intercept']:+.4f}  valid RMSE {summary['valid_rmse']:.4f}  "
        f"test RMSE {summary['test_rmse']:.4f}  test MAE {summary['test_mae']:.4f}"
    )
    if out is not None:
        typer.echo(f"{out / 'blend.md'}  (serve it: deepmovie serve {out})")


@app.command()
def bench(
    out: Annotated[Path, typer.Option(help="bench folder: results.{md,json,csv}, plots, runs/")],
    models: Annotated[
        list[str] | None, typer.Argument(help="MODEL[,MODEL...]; an entry may be LABEL=MODEL@PRESET.yaml")
    ] = None,
    data: Data = None,
    split: Split = None,
    test_file: TestFile = None,
    seeds: Annotated[str, typer.Option(help="comma-separated seeds, e.g. 0,1,2")] = "0",
    tuned: Annotated[bool, typer.Option(help="use configs/tuned/<model>-<dataset>.yaml presets")] = False,
    config_dir: Annotated[Path, typer.Option(help="where presets and tuned/ presets live")] = Path("configs"),
    set_: Sets = None,
    peers: Annotated[
        str | None, typer.Option(help="peer libraries on the same split: surprise, implicit")
    ] = None,
    rank_k: Annotated[
        int | None, typer.Option(help="a ranking bench: rank every row by NDCG@K (top-K of every model)")
    ] = None,
    suite: Annotated[str | None, typer.Option(help="tutorial, lecture, dlrm or deepmovie")] = None,
    device: Device = None,
    note: Annotated[list[str] | None, typer.Option(help="a line for results.md, e.g. the load")] = None,
    max_memory: MaxMemory = None,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Run models x seeds (+ peers) on one split; write mean ± std tables and plots to OUT."""
    import shlex

    from deepmovie.bench import run_bench

    _quiet(quiet)
    rows = run_bench(
        list(models or []),
        out=out,
        suite=suite,
        data=data,
        split=split,
        test_file=test_file,
        seeds=seeds,
        tuned=tuned,
        config_dir=config_dir,
        params=parse_assignments(set_ or []),
        peers=[p for p in (peers or "").split(",") if p],
        device=device,
        max_memory=_bytes(max_memory),
        rank_k=rank_k,
        command=shlex.join(["deepmovie", *sys.argv[1:]]),
        notes=note,
        overwrite=overwrite,
        log=(lambda line: None) if quiet else (lambda line: typer.echo(line, err=True)),
    )
    typer.echo(f"{len(rows)} rows -> {out / 'results.md'}")


AsJson = Annotated[bool, typer.Option("--json", help="print the result as JSON")]


def _emit(result: Any, as_json: bool, lines: list[str]) -> None:
    typer.echo(result.model_dump_json(indent=2) if as_json else "\n".join(lines))


def _movie_line(rank: int, movie: Any, value: str) -> str:
    genres = "|".join(movie.genres)
    return f"{rank:3d}. {value:>6s}  {movie.item!s:>8s}  {movie.title or '-'}  {genres}".rstrip()


RankerRun = Annotated[
    Path | None, typer.Option("--ranker", help="the run whose scores order the list (instead of RUN)")
]
RaterRun = Annotated[
    Path | None,
    typer.Option("--rater", help="a rating run on the same data: its predicted stars are shown"),
]
AnyRun = Annotated[
    Path | None,
    typer.Argument(help="a run directory (ranking or rating model) written by `deepmovie train --out`"),
]


def _served(run: Path | None, ranker: Path | None, rater: Path | None, max_memory: str | None) -> Any:
    """The recommender of RUN (or --ranker), paired with --rater: both trained on the same data."""
    from deepmovie.recommender import Recommender

    if (run is None) == (ranker is None):
        raise DeepMovieError("give one run: RUN or --ranker RUN (with --rater RUN for predicted stars)")
    limit = _bytes(max_memory)
    recommender = Recommender.load(run or ranker, max_memory=limit)
    if rater is not None:
        recommender.pair(Recommender.load(rater, max_memory=limit))
    return recommender


@app.command()
def predict(
    user: Annotated[str, typer.Option(help="user id")],
    item: Annotated[str, typer.Option(help="item (movie) id")],
    run: AnyRun = None,
    ranker: RankerRun = None,
    rater: RaterRun = None,
    max_memory: MaxMemory = None,
    as_json: AsJson = False,
) -> None:
    """Predict one user's rating of one item (the rater's, where one is paired; a ranking model's
    own score otherwise)."""
    recommender = _served(run, ranker, rater, max_memory)
    model = recommender.rater or recommender
    result = model.predict(user, item)
    what = "stars" if model.model.task == "rating" else f"{model.model.task} score"
    _emit(
        result,
        as_json,
        [f"{result.rating:.2f} {what}  user {result.user}, {result.item.title or result.item.item}"],
    )


@app.command()
def recommend(
    run: AnyRun = None,
    user: Annotated[str | None, typer.Option(help="a known user id")] = None,
    ratings: Annotated[
        str | None, typer.Option(help="a new user's ratings, item:rating pairs, e.g. 1:5,50:4,260:5")
    ] = None,
    ranker: RankerRun = None,
    rater: RaterRun = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="how many items")] = 10,
    offset: Annotated[int, typer.Option(min=0, help="first position of the page (0: the top)")] = 0,
    genre: Annotated[
        list[str] | None, typer.Option(help="only items of this genre (repeatable: any of them)")
    ] = None,
    min_year: Annotated[int | None, typer.Option(help="only items released this year or later")] = None,
    max_year: Annotated[int | None, typer.Option(help="only items released this year or earlier")] = None,
    min_ratings: Annotated[
        int, typer.Option(min=0, help="only items with at least this many training ratings")
    ] = 0,
    exclude: Annotated[list[str] | None, typer.Option(help="an item never to show (repeatable)")] = None,
    max_per_genre: Annotated[
        int | None, typer.Option(min=1, help="at most this many items of one genre")
    ] = None,
    diversity: Annotated[
        float | None, typer.Option(min=0, max=1, help="MMR weight of dissimilarity (0: none)")
    ] = None,
    explain: Annotated[
        bool, typer.Option(help="show the rated items behind each item (because you liked ...)")
    ] = True,
    include_seen: Annotated[bool, typer.Option(help="keep items the user already rated")] = False,
    max_memory: MaxMemory = None,
    as_json: AsJson = False,
) -> None:
    """Top-K items for a known user (--user) or for a new one given by a few ratings (--ratings),
    ordered by the ranker's score, with the rater's predicted stars where there is one."""
    from deepmovie.recommender.recommender import parse_ratings

    if (user is None) == (ratings is None):
        raise DeepMovieError("recommend needs exactly one of a user id (--user) or ratings (--ratings)")
    recommender = _served(run, ranker, rater, max_memory)
    options = {
        "k": k,
        "offset": offset,
        "explain": explain,
        "exclude_seen": not include_seen,
        "genres": genre or (),
        "min_year": min_year,
        "max_year": max_year,
        "min_ratings": min_ratings,
        "exclude": exclude or (),
        "max_per_genre": max_per_genre,
        "diversity": diversity,
    }
    if ratings is not None:
        result = recommender.recommend_new(parse_ratings(ratings), **options)
    else:
        result = recommender.recommend(user, **options)
    who = f"user {result.user}" if result.user is not None else "a new user (cold start)"
    stars = f"stars by {result.rater}" if result.rater else "no stars (pair a rating run: --rater)"
    header = (
        f"top {len(result.items)} for {who}: ranked by {result.ranker} ({result.method}), {stars}; "
        f"{result.excluded_seen} rated item(s) left out"
    )
    lines = [header]
    for n, m in enumerate(result.items, start=result.offset + 1):
        shown = f"{m.rating:.2f}★" if m.rating is not None else "-"
        lines.append(_movie_line(n, m, f"{m.score:9.4f} {shown:>6s}"))
        if m.because:
            liked = "; ".join(r.title or str(r.item) for r in m.because)
            lines.append(f"{'':5s}because you liked {liked}")
    _emit(result, as_json, lines)


@app.command()
def similar(
    item: Annotated[str, typer.Option(help="item (movie) id")],
    run: AnyRun = None,
    ranker: RankerRun = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="how many items")] = 10,
    max_memory: MaxMemory = None,
    as_json: AsJson = False,
) -> None:
    """The K items most similar to an item (the model's item-item weights where it has them)."""
    result = _served(run, ranker, None, max_memory).similar(item, k=k)
    header = f"similar to {result.item.title or result.item.item} ({result.method}):"
    lines = [_movie_line(n, m, f"{m.similarity:.3f}") for n, m in enumerate(result.items, start=1)]
    _emit(result, as_json, [header, *lines])


@app.command()
def serve(
    run: AnyRun = None,
    ranker: RankerRun = None,
    rater: RaterRun = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="server processes (one model copy each)")] = 1,
    max_body: Annotated[
        int, typer.Option(min=1, help="largest request body in bytes (413 above)")
    ] = 1_000_000,
    max_k: Annotated[int, typer.Option(min=1, help="most items one request may ask for (422 above)")] = 1000,
    max_memory: MaxMemory = None,
) -> None:
    """Serve the REST API (docs at /docs) and the web page (/) of a run, or of a ranker paired with a
    rater (--ranker RUN --rater RUN: ordered by the ranker, stars from the rater)."""
    import inspect
    import os

    import uvicorn

    from deepmovie.serving.api import create_app, serve_env

    recommender = _served(run, ranker, rater, max_memory)  # a bad run directory fails here, in one line
    served = f"{run or ranker} ({recommender.model_name})"
    if rater is not None:
        served += f" with stars from {rater} ({recommender.rater.model_name})"
    typer.echo(f"serving {served} at http://{host}:{port}/  (API docs: /docs)", err=True)
    options: dict[str, Any] = {"host": host, "port": port, "log_level": "warning", "access_log": False}
    if workers == 1:
        uvicorn.run(create_app(recommender, max_body=max_body, max_k=max_k), **options)
    else:  # each worker process loads the runs again: they come by environment
        os.environ.update(serve_env(run or ranker, rater, max_body, max_k))
        if "timeout_worker_healthcheck" in inspect.signature(uvicorn.Config).parameters:
            # A worker answers the supervisor's pings only once it has imported PyTorch and loaded
            # the runs: on a busy machine that took more than uvicorn's 5 s, and the supervisor
            # killed and restarted every worker, forever.
            options["timeout_worker_healthcheck"] = 120
        uvicorn.run("deepmovie.serving.api:app_from_env", factory=True, workers=workers, **options)
