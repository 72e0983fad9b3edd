"""GPU readiness in one script: CUDA/CPU equivalence and GPU speed on generated data, in one report.

The equivalence of every model family and the speed figures of the "Speed" issue, in one Markdown file:

a) CUDA/CPU equivalence: one registered model per family, trained 1-2 epochs with the same seed on the
   CPU and on the GPU; the largest score difference on fixed (user, item) pairs and the test figure on
   each device, judged by a rule the report states.
b) mf and biased-mf training samples/s on ML-20M-shaped data: fp32 and bf16 autocast, at each model's
   default batch size and at a large one.
c) ALS seconds per sweep on the same data: pmf (k=50) and ials (k=64) with its cg and exact solvers.
d) hybrid (cnn encoder) seconds per iteration on ML-1M-shaped data with generated documents.
e) torch.compile off and on for mf: samples/s both ways.

Every data set is made by :mod:`deepmovie.data.synth` (seed 0) in a temporary folder, so the check
needs no download and no ../shared data. Each section is guarded (a failure writes its error line into
the report and the run goes on) and has a time budget, checked between its measurements; together they
keep the whole run under 5 minutes on one H100/H200. Usage::

    python benchmarks/gpu_check.py                     # on the GPU: benchmarks/results/gpu-check.md
    python benchmarks/gpu_check.py --device cpu --quick --out /tmp/gpu-check.md   # smoke test, CPU

``--quick`` runs every section at tiny sizes (under a minute on CPU); with ``--device cpu`` section a
compares the CPU with itself, which tests this script, not CUDA. Exit status: 0 when every section ran
and every equivalence check passed, 1 otherwise (the report is written either way), 2 when no CUDA
GPU is there to check.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import os
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import torch
from common import median, write_report
from hybrid_speed import POSTER, time_iterations

import deepmovie
from deepmovie import machine
from deepmovie.config import build_config
from deepmovie.data.dataset import Dataset, load_dataset
from deepmovie.data.synth import synthesize
from deepmovie.experiment import build_model
from deepmovie.models import MODELS, Model
from deepmovie.splits import Split

SPLIT = "random:0.1"
SEED = 0
GOAL_SAMPLES_PER_SECOND = 30e6  # the issue's goal for mf / biased-mf on one H100/H200
NCF_A100 = "NVIDIA's NCF reaches 22.6M samples/s on an A100 in TF32"
VOCABULARY = 10_000  # words the generated documents draw from (Zipf)


@dataclass(frozen=True)
class Plan:
    """Sizes and time budgets of one run: the full GPU check, or ``--quick``'s tiny smoke test."""

    quick: bool
    shapes: dict[str, tuple[str, tuple[int, int, int] | None]]  # data kind -> synth shape, sizes
    pairs: int  # (user, item) pairs whose scores are compared in section a
    max_batches: int  # batches in a timed epoch of section b and e (fewer when the data runs out)
    large_batch: int
    doc_words: int  # median words of a generated document
    repeats: int  # timed epochs or sweeps after the warm-up one; the median is reported
    iterations: int  # timed hybrid iterations after the warm-up one
    budgets: dict[str, float]  # section letter -> seconds
    budget: float  # the whole run, in seconds


FULL = Plan(
    quick=False,
    shapes={"small": ("ml-100k", (600, 1000, 30_000)), "large": ("ml-20m", None), "hybrid": ("ml-1m", None)},
    pairs=4096,
    max_batches=1000,
    large_batch=1 << 16,
    doc_words=100,  # the order of ConvMF's ML-1M plot documents
    repeats=3,
    iterations=2,
    budgets={"a": 75, "b": 45, "c": 40, "d": 20, "e": 45},
    budget=280,
)
QUICK = Plan(
    quick=True,
    shapes={
        "small": ("ml-100k", (60, 120, 2_400)),
        "large": ("ml-20m", (200, 300, 8_000)),
        "hybrid": ("ml-1m", (60, 120, 2_400)),
    },
    pairs=256,
    max_batches=4,
    large_batch=2048,
    doc_words=16,
    repeats=1,
    iterations=1,
    budgets={"a": 45, "b": 20, "c": 20, "d": 20, "e": 20},
    budget=100,
)


@dataclass(frozen=True)
class Check:
    """One model of section a, and how its two runs are judged."""

    model: str
    params: dict
    closed_form: bool  # judged on its scores (else on its test figure: SGD kernels differ by device)
    tolerance: float  # relative: of the largest score, or of the test figure


# One registered model per family. Device-side noise (dropout, input corruption) is switched off where a
# parameter allows, so that both runs draw the same random numbers (all else is drawn on the CPU).
SCORES, FIGURE, NOISY_FIGURE = 1e-3, 0.01, 0.05  # the tolerances, as the report states them
CHECKS = [
    Check("bias", {}, True, SCORES),
    Check("biased-mf", {}, False, FIGURE),
    Check("pmf", {}, True, SCORES),
    Check("svdpp", {}, False, FIGURE),
    Check("deepmf", {}, False, FIGURE),
    Check("autorec", {}, False, FIGURE),
    Check("cdae", {"corruption": 0.0}, False, FIGURE),
    Check("fm", {}, False, FIGURE),
    Check("dlrm", {"dropout": 0.0}, False, FIGURE),
    Check(
        "hybrid", {"encoder": "cnn", "encoder_epochs": 1, "encoder_params": {"dropout": 0.0}}, False, FIGURE
    ),
    Check("ease", {"epochs": 1}, True, SCORES),
    Check("ials", {}, True, SCORES),
    Check("bpr", {}, False, FIGURE),
    Check("multvae", {"dropout": 0.0}, False, NOISY_FIGURE),  # its sampled code: each device's RNG
    Check("two-tower", {"dropout": 0.0}, False, FIGURE),
]
CHECK_EPOCHS = 2

# Section b: the precisions each model is timed at. ``amp`` (bf16 autocast on CUDA) turns the fused SGD
# step off, so biased-mf is also timed on the autograd path in fp32, to tell the two effects apart.
RATE_RUNS = {
    "mf": [("fp32", {}), ("bf16 autocast", {"amp": True})],
    "biased-mf": [("fp32", {}), ("fp32", {"fused": False}), ("bf16 autocast", {"amp": True})],
}
SWEEPS = [
    ("pmf", {"factors": 50}),
    ("ials", {"factors": 64, "solver": "cg"}),
    ("ials", {"factors": 64, "solver": "exact"}),
]


@dataclass
class Budget:
    """Seconds a section may spend; checked between measurements (one may overrun it)."""

    seconds: float
    began: float = field(default_factory=time.perf_counter)

    def spent(self) -> bool:
        return time.perf_counter() - self.began >= self.seconds

    def skipped(self, what: str) -> str:
        return f"{what}: skipped, the section's {self.seconds:g} s budget is spent"


@dataclass
class Generated:
    """One generated data set: its folder, item documents (if made) and what loading it took."""

    kind: str
    folder: Path
    description: str  # what synth made
    docs: Path | None
    seconds: float
    dataset: Dataset | None = None
    split: Split | None = None
    order: np.ndarray | None = None  # a seeded order of the training rows: timed subsets are its prefixes


@dataclass
class Rate:
    """One timed training configuration of section b or e."""

    rows: int
    warm_up: float  # seconds of the first epoch (CUDA kernels loaded, torch.compile compiling)
    seconds: float  # median seconds of the timed epochs
    path: str

    @property
    def samples_per_second(self) -> float:
        return self.rows / self.seconds


class Run:
    """What the sections share: the device, the plan, the clock and the generated data (made on first
    use, so a section that fails before needing the ML-20M set does not pay for it)."""

    def __init__(self, device: torch.device, plan: Plan, work: Path) -> None:
        self.device = device
        self.plan = plan
        self.work = work
        self.began = time.perf_counter()
        self.generated: dict[str, Generated] = {}
        self.failed = False

    def log(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.began:6.1f} s] {message}", flush=True)

    def folder(self, kind: str, docs: bool = False) -> Generated:
        """The generated folder of ``kind`` (with a documents file when ``docs``)."""
        if kind not in self.generated:
            shape, sizes = self.plan.shapes[kind]
            folder = self.work / f"{kind}-{shape}"
            self.log(f"generating {kind} data ({shape} shape{f', sizes {sizes}' if sizes else ''})")
            began = time.perf_counter()
            report = synthesize(shape, folder, seed=SEED, sizes=sizes, quiet=True)
            path = write_documents(folder, self.plan.doc_words) if docs else None
            description = report.splitlines()[0].split(" -> ")[0]
            self.generated[kind] = Generated(kind, folder, description, path, time.perf_counter() - began)
        return self.generated[kind]

    def data(self, kind: str, docs: bool = False) -> Generated:
        """The generated set of ``kind``, loaded, with all of its ratings as training rows."""
        data = self.folder(kind, docs)
        if data.dataset is None:
            began = time.perf_counter()
            data.dataset = load_dataset(data.folder, item_docs=data.docs)
            data.split = every_rating(data.dataset)
            data.order = np.random.default_rng(SEED).permutation(len(data.split.train))
            data.seconds += time.perf_counter() - began
            self.log(f"loaded {data.dataset.describe()}")
        return data

    def model(self, name: str, params: dict, data: Generated) -> Model:
        config = build_config({"model": name, "data": str(data.folder), "seed": SEED, "params": params})
        return build_model(config, data.dataset, data.split, self.device)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def timed(self, work: Callable[[], object]) -> float:
        """Seconds of ``work`` with the device's queue drained before and after."""
        self.sync()
        began = time.perf_counter()
        work()
        self.sync()
        return time.perf_counter() - began

    def epoch_rate(self, name: str, params: dict, data: Generated) -> Rate:
        """Samples/s of ``name``'s training epochs over at most ``max_batches`` batches: the first rows of
        ``data.order``, so configurations of one batch size train on the same rows."""
        model = self.model(name, params, data)
        rows = min(len(data.order), self.plan.max_batches * model.params.batch_size)
        model.prepare(data.split.train.subset(data.order[:rows]), seed=SEED)
        warm_up, seconds = self.epoch_seconds(model)
        return Rate(rows, warm_up, seconds, "fused SGD" if model._fused_sgd() else "autograd")

    def epoch_seconds(self, model: Model) -> tuple[float, float]:
        """(seconds of the first epoch, median seconds of the next ``repeats``) of a prepared model: the
        first loads CUDA kernels (and compiles, under torch.compile), so it is kept apart."""
        model.train()
        epochs = itertools.count(1)

        def epoch() -> float:
            return self.timed(lambda: model.train_epoch(next(epochs)))

        first = epoch()
        return first, median(epoch, self.plan.repeats)[0]


def every_rating(dataset: Dataset) -> Split:
    """A split that trains on every rating: timing needs no held-out rows, and ``make_splits``' overlap
    check alone takes about 30 s on 20M ratings (2 cores)."""
    none = dataset.interactions.subset(np.zeros(0, dtype=np.int64))
    return Split("all", SEED, None, dataset.interactions, none, none, "")


def write_documents(folder: Path, median_words: int) -> Path:
    """``item_id::text`` for every film of ``folder``: word counts lognormal around ``median_words``,
    words drawn from a Zipf law over VOCABULARY, so the tokenizer's document-frequency filter and the
    encoder see text-like statistics."""
    options = pacsv.ConvertOptions(include_columns=["movieId"])
    ids = pacsv.read_csv(folder / "movies.csv", convert_options=options)["movieId"].to_numpy()
    rng = np.random.default_rng(SEED)
    weights = 1.0 / np.arange(1, VOCABULARY + 1)
    lengths = np.clip(rng.lognormal(np.log(median_words), 0.5, len(ids)), 10, 300).astype(int)
    words = np.split(
        rng.choice(VOCABULARY, lengths.sum(), p=weights / weights.sum()), np.cumsum(lengths)[:-1]
    )
    path = folder / "documents.txt"
    path.write_text(
        "".join(f"{i}::{' '.join(f'w{w}' for w in ws)}\n" for i, ws in zip(ids, words, strict=True))
    )
    return path


# Section a ------------------------------------------------------------------------------------------


@dataclass
class Fitted:
    figure_name: str
    figure: float
    scores: np.ndarray
    seconds: float


def fit_and_score(
    check: Check, dataset: Dataset, device: str, pairs: tuple[np.ndarray, np.ndarray]
) -> Fitted:
    """Train ``check``'s model on ``device`` with the shared seed; its test figure and scores of ``pairs``."""
    began = time.perf_counter()
    rec = deepmovie.fit(
        check.model,
        data=dataset,
        split=SPLIT,
        seed=SEED,
        device=device,
        **{"epochs": CHECK_EPOCHS, **check.params},
    )
    seconds = time.perf_counter() - began
    monitor = rec.summary["monitor"]
    at = rec.model.device
    with torch.no_grad():
        scores = rec.model.predict(torch.as_tensor(pairs[0], device=at), torch.as_tensor(pairs[1], device=at))
    return Fitted(monitor, float(rec.summary[f"test_{monitor}"]), scores.float().cpu().numpy(), seconds)


def equivalence(run: Run, budget: Budget, lines: list[str]) -> None:
    data = run.data("small", docs=True)
    dataset = data.dataset
    rng = np.random.default_rng(SEED)
    pairs = (
        rng.integers(dataset.n_users, size=run.plan.pairs),
        rng.integers(dataset.n_items, size=run.plan.pairs),
    )
    device = run.device.type
    if device == "cpu":
        lines.append(
            "**CPU compared with CPU**: no GPU in this run, so this section is a smoke test of the script, "
            "not a check of CUDA; both runs should agree to float rounding."
        )
        lines.append("")
    lines += [
        f"Each model trains {CHECK_EPOCHS} epochs (ease: its one closed-form fit; hybrid: iterations of "
        "one encoder epoch) from the same seed on "
        f"`cpu` and on `{device}`, on {dataset.describe()}, split `{SPLIT}`. Scores are compared on "
        f"{run.plan.pairs:,} fixed random (user, item) pairs; the test figure is the one each model is "
        "selected on (RMSE for ratings, NDCG@10 for rankings).",
        "",
        "Rule: closed-form models (float32 solves, no sampling) **pass** when max |score difference| <= "
        f"{SCORES:g} x max |CPU score|; SGD-trained models, whose GPU kernels (atomic adds, cuBLAS, "
        "cuDNN) are not bit-identical to the CPU's, **pass** when the test figures are within "
        f"{FIGURE:.0%} of each other. Device-side noise is switched off where a parameter allows (cdae "
        "corruption, dlrm, two-tower and multvae dropout, the cnn encoder's dropout) so both runs draw "
        "the same random numbers; multvae's sampled code comes from each device's own generator, so its "
        f"rule is {NOISY_FIGURE:.0%}.",
        "",
        f"| model | family | rule | test figure | on cpu | on {device} | figure diff | max abs score diff "
        f"| relative to max score | seconds on cpu / {device} | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    failed = []
    for check in CHECKS:
        if budget.spent():
            lines.append(f"| {check.model} | | | | | | | | | | {budget.skipped('not run')} |")
            failed.append(check.model)
            continue
        family = MODELS.get(check.model).__module__.split(".")[2]
        rule = (
            f"scores <= {check.tolerance:g} rel." if check.closed_form else f"figure <= {check.tolerance:.0%}"
        )
        try:
            cpu = fit_and_score(check, dataset, "cpu", pairs)
            other = fit_and_score(check, dataset, device, pairs)
        except Exception as exc:  # one model's failure is its row's verdict; the others still run
            traceback.print_exc()
            failed.append(check.model)
            lines.append(f"| {check.model} | {family} | {rule} | | | | | | | | **FAIL**: {_one_line(exc)} |")
            run.log(f"a) {check.model}: FAIL ({_one_line(exc)})")
            continue
        difference = np.abs(cpu.scores - other.scores)
        largest = float(difference.max())
        relative = largest / max(float(np.abs(cpu.scores).max()), 1e-12)
        figure_change = abs(other.figure - cpu.figure) / max(abs(cpu.figure), 1e-12)
        measured = relative if check.closed_form else figure_change
        passed = bool(np.isfinite(other.scores).all()) and measured <= check.tolerance
        if not passed:
            failed.append(check.model)
        verdict = "PASS" if passed else "**FAIL**"
        figures = f"{cpu.figure_name} | {cpu.figure:.4f} | {other.figure:.4f} | {figure_change:.2%}"
        seconds = f"{cpu.seconds:.1f} / {other.seconds:.1f}"
        lines.append(
            f"| {check.model} | {family} | {rule} | {figures} | {largest:.2e} | {relative:.2e} | {seconds} "
            f"| {verdict} |"
        )
        run.log(
            f"a) {check.model}: {verdict.strip('*')} (scores {relative:.1e} rel., figure {figure_change:.2%})"
        )
    lines.append("")
    if failed:
        run.failed = True
        lines.append(f"**{len(failed)} of {len(CHECKS)} failed or not run**: {', '.join(failed)}.")
    else:
        lines.append(f"All {len(CHECKS)} models pass.")


# Section b ------------------------------------------------------------------------------------------


def throughput(run: Run, budget: Budget, lines: list[str]) -> None:
    data = run.data("large")
    budget.began = time.perf_counter()  # making the ML-20M-shaped set is not part of the measurement
    on_gpu = run.device.type == "cuda"
    lines += [
        f"On {data.dataset.describe()}. Each figure: the median of {run.plan.repeats} timed epochs after "
        f"one warm-up epoch, the device synchronised around each. An epoch covers at most "
        f"{run.plan.max_batches:,} batches: the first rows of one seeded random order of all the ratings "
        "(all of them where the batch is large), so every configuration of a batch size trains on the "
        "same rows. Model defaults otherwise (mf: k=64, sparse Adam; biased-mf: k=128, plain SGD).",
        "",
        "bf16 is the models' own `amp=True` (bfloat16 autocast on CUDA). It turns the fused SGD step off, "
        "so bf16 runs take the autograd path; biased-mf's fp32 autograd row (`fused=False`) tells the "
        "two effects apart. Autocast lowers only matmul-like ops, and MF's loss is gathers and products, "
        "so bf16 is not expected to be faster here."
        + ("" if on_gpu else " **On CPU autocast is off: the bf16 rows run in fp32.**"),
        "",
        "| model | batch | precision | path | rows per epoch | warm-up epoch s | s / epoch | samples/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    best: dict[str, tuple[float, str]] = {}
    for name, runs in RATE_RUNS.items():
        default_batch = MODELS.get(name).Params().batch_size
        # The large batch first: it makes the figure the goal is about, should the budget run out.
        for batch, (precision, params) in itertools.product((run.plan.large_batch, default_batch), runs):
            label = f"{name}, batch {batch:,}, {precision}{', fused=False' if 'fused' in params else ''}"
            if budget.spent():
                lines.append(f"| {name} | {batch:,} | {precision} | | | | | {budget.skipped('not run')} |")
                continue
            rate = run.epoch_rate(name, {**params, "batch_size": batch}, data)
            lines.append(
                f"| {name} | {batch:,} | {precision} | {rate.path} | {rate.rows:,} | {rate.warm_up:.3f} "
                f"| {rate.seconds:.3f} | {rate.samples_per_second:,.0f} |"
            )
            run.log(f"b) {label}: {rate.samples_per_second:,.0f} samples/s")
            if rate.samples_per_second > best.get(name, (0.0, ""))[0]:
                best[name] = (rate.samples_per_second, f"batch {batch:,}, {precision}, {rate.path}")
    lines.append("")
    goal = f"Goal: >= {GOAL_SAMPLES_PER_SECOND / 1e6:g}M samples/s on one H100/H200 ({NCF_A100})."
    if not on_gpu:
        goal += " Not judged here: this run is on the CPU."
    lines.append(goal)
    for name, (rate, how) in best.items():
        verdict = (" **met**" if rate >= GOAL_SAMPLES_PER_SECOND else " **missed**") if on_gpu else ""
        lines.append(f"- {name}: best {rate / 1e6:.2f}M samples/s ({how}){verdict}")


# Section c ------------------------------------------------------------------------------------------


def als_sweeps(run: Run, budget: Budget, lines: list[str]) -> None:
    data = run.data("large")
    budget.began = time.perf_counter()
    train = data.split.train
    lines += [
        f"On {data.dataset.describe()}, every rating. Set-up (the padded rating rows on the device) is "
        "timed apart; the first sweep warms up; then the median of "
        f"{run.plan.repeats} sweeps. A sweep solves every user given the items and every item given the "
        "users.",
        "",
        "| model | solver | k | set-up s | first sweep s | s / sweep | ratings / s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, params in SWEEPS:
        solver = params.get("solver", "batched Cholesky")
        if budget.spent():
            lines.append(f"| {name} | {solver} | {params['factors']} | | | | {budget.skipped('not run')} |")
            continue
        setup, first, seconds = sweep_seconds(run, name, params, data)
        lines.append(
            f"| {name} | {solver} | {params['factors']} | {setup:.2f} | {first:.3f} | {seconds:.3f} "
            f"| {len(train) / seconds:,.0f} |"
        )
        run.log(f"c) {name} ({solver}): {seconds:.3f} s per sweep")


def sweep_seconds(run: Run, name: str, params: dict, data: Generated) -> tuple[float, float, float]:
    """(set-up, first sweep, median sweep) seconds of an ALS model on all of ``data``'s training rows."""
    model = run.model(name, params, data)
    setup = run.timed(lambda: model.prepare(data.split.train, seed=SEED))
    return (setup, *run.epoch_seconds(model))


# Section d ------------------------------------------------------------------------------------------


def hybrid_iterations(run: Run, budget: Budget, lines: list[str]) -> None:
    data = run.folder("hybrid", docs=True)
    budget.began = time.perf_counter()
    values = {
        "model": "hybrid",
        "data": str(data.folder),
        "split": "convmf",
        "item_docs": str(data.docs),
        "device": run.device.type,
        "params": {"factors": 50, "encoder": "cnn"},
    }
    seconds = time_iterations(values, run.plan.iterations, run.device)
    lines += [
        f"On {data.description}, split `convmf` (ConvMF's 80/10/10), with generated documents: a median "
        f"of {run.plan.doc_words} words per film drawn from a Zipf law over {VOCABULARY:,} words. hybrid "
        "with 50 factors and the cnn encoder at its defaults (5 encoder epochs per iteration), timed by "
        f"`hybrid_speed.time_iterations`: the median of {run.plan.iterations} iterations after one "
        "warm-up. ALS = user sweep + item sweep (+ encoding every item), encoder = its epochs on the new "
        "item factors.",
        "",
        "| encoder | ALS s | encoder s | s / iteration | poster (one A10) |",
        "|---|---|---|---|---|",
        f"| cnn | {seconds['als']:.3f} | {seconds['encoder']:.3f} | **{seconds['iteration']:.3f}** "
        f"| {POSTER['cnn']} |",
    ]
    run.log(f"d) hybrid cnn: {seconds['iteration']:.3f} s per iteration")
    if budget.spent():
        lines += ["", f"The iterations took longer than the section's {budget.seconds:g} s budget."]


# Section e ------------------------------------------------------------------------------------------


def compile_mf(run: Run, budget: Budget, lines: list[str]) -> None:
    data = run.data("large")
    budget.began = time.perf_counter()
    lines += [
        "mf at its defaults (sparse Adam, so every step goes through its batch loss: the function "
        "`compile=True` hands to `torch.compile`, default mode), timed as in section b; the warm-up "
        "epoch includes compiling.",
        "",
        "| torch.compile | rows per epoch | warm-up epoch s | s / epoch | samples/s |",
        "|---|---|---|---|---|",
    ]
    off = run.epoch_rate("mf", {"compile": False}, data)
    lines.append(
        f"| off | {off.rows:,} | {off.warm_up:.3f} | {off.seconds:.3f} | {off.samples_per_second:,.0f} |"
    )
    run.log(f"e) mf, compile off: {off.samples_per_second:,.0f} samples/s")
    if run.plan.quick:
        lines += [
            "",
            "Compile on: not run under `--quick` (a cold inductor build alone takes about 30 s of CPU, more "
            "than the whole quick run); the full run measures it.",
        ]
        return
    if budget.spent():
        lines += ["", budget.skipped("Compile on")]
        return
    try:
        on = run.epoch_rate("mf", {"compile": True}, data)
    except Exception as exc:  # a missing compiler or an unsupported op: noted, not a failed check
        traceback.print_exc()
        lines += ["", f"Compile on: skipped, torch.compile failed: {_one_line(exc)}"]
        run.log("e) mf, compile on: torch.compile failed")
        return
    lines.append(f"| on | {on.rows:,} | {on.warm_up:.3f} | {on.seconds:.3f} | {on.samples_per_second:,.0f} |")
    lines += ["", f"Compiled / eager: {on.samples_per_second / off.samples_per_second:.2f}x."]
    run.log(f"e) mf, compile on: {on.samples_per_second:,.0f} samples/s")


SECTIONS: list[tuple[str, str, Callable[[Run, Budget, list[str]], None]]] = [
    ("a", "CUDA/CPU equivalence of each model family", equivalence),
    ("b", "mf and biased-mf training throughput (ML-20M shape)", throughput),
    ("c", "ALS sweep time (ML-20M shape)", als_sweeps),
    ("d", "hybrid (cnn encoder) seconds per iteration (ML-1M shape)", hybrid_iterations),
    ("e", "torch.compile on/off for mf (ML-20M shape)", compile_mf),
]


def run_section(
    run: Run, letter: str, title: str, body: Callable[[Run, Budget, list[str]], None]
) -> list[str]:
    """The section's lines: its figures, or as many as it got and its error line last."""
    left = run.plan.budget - (time.perf_counter() - run.began)
    budget = Budget(min(run.plan.budgets[letter], left))
    lines: list[str] = []
    began = time.perf_counter()
    run.log(f"{letter}) {title}")
    if left <= 0:
        lines.append(f"Skipped: the run's {run.plan.budget:g} s budget is spent.")
    else:
        try:
            body(run, budget, lines)
        except Exception as exc:  # the report says what failed, and the next section still runs
            traceback.print_exc()
            run.failed = True
            lines += ["", f"**error**: {_one_line(exc)}"]
            run.log(f"{letter}) error: {_one_line(exc)}")
    took = f"_{time.perf_counter() - began:.1f} s with its data; measurements budget {budget.seconds:g} s._"
    return [f"## {letter}) {title}", "", took, "", *lines, ""]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def header(run: Run) -> list[str]:
    device = run.device
    versions = f"torch {torch.__version__}, CUDA {torch.version.cuda or 'none (a CPU build of torch)'}"
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        versions += (
            f", cuDNN {torch.backends.cudnn.version()}, {props.name} {props.total_memory / 2**30:.0f} GiB; "
            f"TF32 allowed in matmul {tf32[0]}, in cuDNN {tf32[1]}"
        )
    mode = (
        "`--quick`: tiny sizes on one torch thread, a smoke test of the script"
        if run.plan.quick
        else "full check"
    )
    if device.type == "cpu":
        mode += "; on the CPU, so section a compares the CPU with itself and no figure is a GPU figure"
    data = [
        f"  - {g.kind}: {g.description}{' + generated documents' if g.docs else ''} "
        f"({g.seconds:.1f} s to generate{' and load' if g.dataset else ''})"
        for g in run.generated.values()
    ]
    return [
        "# GPU check: CUDA/CPU equivalence and speed on generated data",
        "",
        f"- command: `{shlex.join(['python', 'benchmarks/gpu_check.py', *sys.argv[1:]])}`",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {machine.describe(device)}",
        f"- versions: {versions}",
        f"- mode: {mode}",
        f"- run time: {time.perf_counter() - run.began:.0f} s (budget {run.plan.budget:g} s)",
        f"- data, made by `deepmovie.data.synth` (seed {SEED}; no download, no shared data):",
        *data,
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="the device to check")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the script")
    parser.add_argument("--workdir", type=Path, help="where the generated data goes (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu-check.md"))
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.exit(
            2,
            f"gpu_check: no CUDA GPU is available (torch {torch.__version__}); run with --device cpu "
            "--quick for a smoke test of this script on the CPU\n",
        )

    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu-check-", dir=args.workdir))
    # Load caches of the generated sets go with them, not into the user's DEEPMOVIE_HOME.
    os.environ["DEEPMOVIE_HOME"] = str(work / "home")
    if args.quick:
        # Tiny kernels gain nothing from threads, and on a busy machine OpenMP threads waiting on each
        # other make them several times slower: the smoke test stays quick on one thread.
        torch.set_num_threads(1)
    run = Run(torch.device(args.device), QUICK if args.quick else FULL, work)
    try:
        if run.device.type == "cuda":
            run.timed(lambda: torch.zeros(1, device=run.device))  # the CUDA context, before any timing
        sections = [line for s in SECTIONS for line in run_section(run, *s)]
        write_report(args.out, header(run) + sections)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    run.log(f"wrote {args.out}" + (" (some check failed or a section stopped)" if run.failed else ""))
    sys.exit(1 if run.failed else 0)


if __name__ == "__main__":
    main()
