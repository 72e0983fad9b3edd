"""Write a bench's results as JSON, CSV and Markdown, with how, where and when they were measured."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from deepmovie.bench.results import Missing, Row
from deepmovie.files import write_text

RESULTS = "results.json"  # what marks a folder as a bench's, with runs/
CSV_FIELDS = (
    "label",
    "model",
    "source",
    "task",
    "metric",
    "mean",
    "std",
    "mae",
    "mae_std",
    "cold_test_rows",
    "n_train",
    "n_test",
    "fit_seconds",
    "fit_seconds_std",
    "seconds_per_epoch",
    "samples_per_second",
    "parameters",
    "device",
    "seeds",
)


@dataclass(frozen=True)
class Meta:
    """Everything a reader needs to repeat or discount the figures."""

    title: str
    command: str
    date: str
    machine: str
    versions: dict[str, str]
    data: str
    split: str
    seeds: list[int]
    threads: str
    load_average: dict[str, str]
    notes: list[str] = field(default_factory=list)
    peers: dict[str, str] = field(default_factory=dict)  # label -> settings


def write_all(out: Path, meta: Meta, rows: list[Row], missing: list[Missing], plots: list[str]) -> None:
    document = {
        "meta": asdict(meta),
        "rows": [r.to_dict() for r in rows],
        "missing": [asdict(m) for m in missing],
        "plots": plots,
    }
    write_text(out / RESULTS, json.dumps(document, indent=2) + "\n")
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row.to_dict(), "seeds": " ".join(map(str, row.seeds))})
    write_text(out / "results.csv", table.getvalue())
    write_text(out / "results.md", markdown(meta, rows, missing, plots))


def markdown(meta: Meta, rows: list[Row], missing: list[Missing], plots: list[str]) -> str:
    lines = [
        f"# {meta.title}",
        "",
        f"- command: `{meta.command}`",
        f"- date: {meta.date}",
        f"- machine: {meta.machine}",
        f"- threads: {meta.threads}; load average {meta.load_average['start']} at the start, "
        f"{meta.load_average['end']} at the end",
        f"- versions: {', '.join(f'{k} {v}' for k, v in meta.versions.items())}",
        f"- data: {meta.data}",
        f"- split: {meta.split}; seeds {', '.join(map(str, meta.seeds))} (each seed draws the "
        "validation rows and initialisation, and the split itself where the protocol is random)",
        "- test figures: mean ± sample standard deviation over the seeds; DeepMovie's models choose "
        "their epoch on validation rows carved from the training part, peers train on all of it; the "
        "test rows are scored once per run; cold test rows: those whose user or item the model never "
        "trained on (without a refit, DeepMovie's models did not train on the validation rows), predicted "
        "by a baseline (Surprise: the training mean)",
        *(f"- {note}" for note in meta.notes),
        "",
        "| label | model | source | test (mean ± std) | MAE | cold test rows | fit s | s/epoch "
        "| samples/s | parameters | device | other test figures |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ranking = bool(rows) and all(r.metric.startswith("ndcg@") for r in rows)
    if ranking:  # a ranking bench: best first
        rows = sorted(rows, key=lambda r: -(r.mean if r.mean is not None else -1.0))
    for r in rows:
        lines.append(
            f"| {r.label} | {r.model} | {r.source} | {_figure(r)} | {_num(r.mae)} | {r.cold_test_rows:,} "
            f"| {_spread(r.fit_seconds, r.fit_seconds_std, 2)} | {_num(r.seconds_per_epoch, 3)} "
            f"| {_count(r.samples_per_second)} | {_count(r.parameters)} | {r.device} "
            f"| {', '.join(f'{k} {v:.4f}' for k, v in r.others.items()) or '-'} |"
        )
    seeds = sorted({s for r in rows for s in r.seeds})
    lines += [
        "",
        "Per seed (the test figure of each run):",
        "",
        "| label | " + " | ".join(f"seed {s}" for s in seeds) + " |",
        "|---|" + "---|" * len(seeds),
    ]
    for r in rows:
        by_seed = dict(zip(r.seeds, r.per_seed, strict=True))
        lines.append(f"| {r.label} | " + " | ".join(_num(by_seed.get(s)) for s in seeds) + " |")
    if missing:
        lines += ["", "Missing (requested, but not available in this installation):", ""]
        lines += [f"- {m.label} (`{m.model}`): {m.reason}" for m in missing]
    if meta.peers:
        lines += ["", "Peer settings:", ""]
        lines += [f"- {label}: {settings}" for label, settings in meta.peers.items()]
    if plots:
        lines += ["", *(f"![{Path(p).stem}]({p})" for p in plots)]
    return "\n".join(lines) + "\n"


def _figure(row: Row) -> str:
    if row.mean is None:
        return "-"
    name = "" if row.metric == "rmse" else f"{row.metric.upper()} "
    return name + _spread(row.mean, row.std, 4)


def _spread(mean: float, std: float | None, digits: int) -> str:
    """``mean ± std``, or the mean alone where one seed gives no spread."""
    return f"{mean:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")


def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _count(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"
