"""Scale on one machine: load ML-20M-shaped data, train one biased-mf epoch on all of it, in one process
and under ``torchrun`` (gloo), with the seconds, samples/s and peak RSS of each.

Every measurement runs in a fresh process (the parent imports no torch: a child's ``ru_maxrss`` starts
at its parent's RSS), so each peak RSS is that step's alone; under torchrun it is the largest rank's.
The data is generated once with :mod:`deepmovie.data.synth` (the ``deepmovie synth ml-20m`` generator)
or taken from ``--data``; its cache is built by the cold load and memory-mapped by every later one.
Usage::

    python benchmarks/scale.py --out benchmarks/results/scale.md            # 20M ratings, 2 ranks
    python benchmarks/scale.py --rows 2000000 --profile --out /tmp/scale.md  # smaller, with cProfile

Run it alone: the 20M epoch uses all cores, and a second 20M job at once would double the memory.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from load_speed import CHILD as LOAD_CHILD
from load_speed import ML_20M_RATINGS, SYNTH_CHILD, _child, _gb, _meminfo, ml20m_sizes

TARGET_EPOCH_SECONDS = 60.0

# One epoch of biased-mf on every rating of the folder (no split: the whole 20M). The same script runs
# alone or under torchrun, where each rank trains on its shard of every global batch.
EPOCH_CHILD = r"""
import cProfile, io, json, pstats, resource, sys, time

import torch

from deepmovie.data.dataset import load_dataset
from deepmovie.models import MODELS, DataInfo
from deepmovie.engine import distributed

distributed.start("cpu")
folder, params, profile = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3] == "1"
began = time.perf_counter()
data = load_dataset(folder)
x = data.interactions
load = time.perf_counter() - began
cls = MODELS.get("biased-mf")
torch.manual_seed(0)
model = cls(cls.Params(**params), DataInfo(data.n_users, data.n_items, data.scale, float(x.ratings.mean())))
began = time.perf_counter()
model.prepare(x, seed=0)
model.train()
prepared = time.perf_counter() - began
profiler = cProfile.Profile() if profile and distributed.is_main() else None
if distributed.active():
    torch.distributed.barrier()
began = time.perf_counter()
if profiler:
    profiler.enable()
loss = model.train_epoch(1)
if profiler:
    profiler.disable()
seconds = time.perf_counter() - began
report = {
    "load_seconds": load, "prepare_seconds": prepared, "epoch_seconds": seconds, "rows": len(x),
    "samples_per_second": len(x) / seconds, "train_loss": loss, "threads": torch.get_num_threads(),
    "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    "world_size": distributed.world_size(), "fused": model._fused_sgd(),
}
if distributed.active():
    every = [None] * distributed.world_size()
    torch.distributed.all_gather_object(every, report)
    report["peak_rss"] = max(r["peak_rss"] for r in every)
    report["epoch_seconds"] = max(r["epoch_seconds"] for r in every)
    report["samples_per_second"] = len(x) / report["epoch_seconds"]
if profiler:
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(18)
    print(text.getvalue(), file=sys.stderr)
if distributed.is_main():
    print(json.dumps(report))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _epoch(work: Path, folder: Path, home: Path, params: dict, nproc: int, profile: bool) -> dict:
    """One epoch in a fresh process, or under ``torchrun --nproc-per-node nproc`` when nproc > 1."""
    script = work / "epoch_child.py"
    script.write_text(EPOCH_CHILD)
    launcher = [sys.executable]
    if nproc > 1:
        launcher += ["-m", "torch.distributed.run", "--nproc-per-node", str(nproc)]
        launcher += ["--master-addr", "127.0.0.1", "--master-port", str(_free_port())]
    command = [*launcher, str(script), str(folder), json.dumps(params), "1" if profile else "0"]
    load = os.getloadavg()[0]
    env = {**os.environ, "DEEPMOVIE_HOME": str(home)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"epoch failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    if profile:
        print(done.stderr)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["load_avg"] = load
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=ML_20M_RATINGS, help="ratings to generate")
    parser.add_argument("--data", type=Path, help="a ratings folder to use instead of generating one")
    parser.add_argument("--nproc", type=int, default=2, help="ranks of the torchrun epoch (0: skip it)")
    parser.add_argument("--set", dest="params", default="{}", help="biased-mf parameters as JSON")
    parser.add_argument("--profile", action="store_true", help="print cProfile of the one-process epoch")
    parser.add_argument("--workdir", type=Path, help="where the data and caches go (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/scale.md"))
    args = parser.parse_args()
    params = json.loads(args.params)

    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="scale-", dir=args.workdir))
    synth, folder = None, args.data
    if folder is None:
        folder = work / "ml-20m-synth"
        sizes = ml20m_sizes(args.rows)
        print(f"generating {sizes[2]:,} ratings ({sizes[0]:,} users, {sizes[1]:,} items) in {folder}")
        synth = _child(SYNTH_CHILD, [str(folder), json.dumps(sizes)], work / "home-synth")
    home = work / "home"
    cold = _child(LOAD_CHILD, [str(folder)], home)
    print(f"cold load {cold['seconds']:.2f} s, peak {_gb(cold['peak_rss'])}", flush=True)
    warm = _child(LOAD_CHILD, [str(folder)], home)
    print(f"warm load {warm['seconds']:.3f} s, peak {_gb(warm['peak_rss'])}", flush=True)
    one = _epoch(work, folder, home, params, 1, args.profile)
    print(f"1 process: epoch {one['epoch_seconds']:.1f} s, peak {_gb(one['peak_rss'])}", flush=True)
    many = _epoch(work, folder, home, params, args.nproc, False) if args.nproc > 1 else None
    if many:
        print(f"{args.nproc} ranks: epoch {many['epoch_seconds']:.1f} s, peak {_gb(many['peak_rss'])}")
    text = _report(args, params, folder, synth, cold, warm, one, many)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    print(f"data and caches left in {work} (remove it when done)")


def _report(args, params, folder, synth, cold, warm, one, many) -> str:
    """The results page: command, machine, date, then one row per measurement."""
    from deepmovie import machine

    met = "**met**" if one["epoch_seconds"] <= TARGET_EPOCH_SECONDS else "**missed**"
    lines = [
        "# Scale on one machine: ML-20M-shaped data, one biased-mf epoch",
        "",
        f"- command: `{shlex.join(['python', 'benchmarks/scale.py', *sys.argv[1:]])}`",
        f"- date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {machine.describe()}, {_meminfo()}",
        f"- data: {cold['describe']}"
        + (" (generated by `deepmovie.data.synth`, ML-20M shape, seed 0)" if synth else f" ({folder})"),
        f"- model: biased-mf, defaults{' + ' + json.dumps(params) if params else ''}; the epoch covers every "
        "rating (no split); set-up (load, tensors, optimizers) is timed apart from the epoch",
        "- each figure: one run in a fresh process; peak RSS = `getrusage(RUSAGE_SELF).ru_maxrss` (largest "
        "rank under torchrun); '1-min load avg' is the machine's load just before the run (the machine "
        "is shared: 2 = both cores busy with other work)",
        "",
        "| step | seconds | samples/s | peak RSS | torch threads | 1-min load avg | note |",
        "|---|---|---|---|---|---|---|",
        f"| load, cold (parse + cache) | {cold['seconds']:.2f} | | {_gb(cold['peak_rss'])} | | "
        f"{cold['load_avg']:.1f} | |",
        f"| load, warm (memory-mapped cache) | {warm['seconds']:.3f} | | {_gb(warm['peak_rss'])} | | "
        f"{warm['load_avg']:.1f} | |",
    ]
    for name, r in (("1 process", one), (f"torchrun, {args.nproc} ranks (gloo)", many)):
        if r is None:
            continue
        path = "autograd + all-gathered sparse gradients"
        if r["fused"]:
            path = "fused SGD (on 1 intra-op thread)"
        target = f"; target <= {TARGET_EPOCH_SECONDS:g} s: {met}" if r is one else ""
        lines.append(
            f"| biased-mf epoch, {name} | {r['epoch_seconds']:.1f} | {r['samples_per_second']:,.0f} "
            f"| {_gb(r['peak_rss'])} | {r['threads']}{' per rank' if r['world_size'] > 1 else ''} "
            f"| {r['load_avg']:.1f} "
            f"| {path}; set-up {r['load_seconds'] + r['prepare_seconds']:.1f} s{target} |"
        )
    if synth:
        lines.append(f"| (generating the data) | {synth['seconds']:.1f} | | {_gb(synth['peak_rss'])} | | | |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
