"""The machine: a one-line description recorded with every result and benchmark, and the memory a
run may take (``--max-memory``, else a share of what is free)."""

from __future__ import annotations

import math
import os
import platform
import re
from pathlib import Path

import torch

FREE_SHARE = 0.8  # of the device's free memory a run may take when no --max-memory is given
UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
BINARY_UNITS = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}  # KiB, MiB, GiB, TiB
SIZE = re.compile(
    r"\s*(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?:(?P<unit>[kmgt])(?P<binary>i)?)?b?\s*", re.IGNORECASE
)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def describe(device: torch.device | str = "cpu") -> str:
    text = (
        f"{platform.machine()} {cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    )
    if torch.device(device).type == "cuda":
        text += f", GPU {torch.cuda.get_device_name(torch.device(device))}"
    return f"{text}, torch {torch.__version__}"


def free_memory(device: torch.device) -> int | None:
    """Bytes ``device`` can still allocate: the GPU's free memory, or the host's available memory
    (Linux's MemAvailable, which counts reclaimable page cache); None where it cannot be told."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def parse_size(text: str) -> int:
    """``"8GB"``, ``"512MiB"``, ``"1.5g"`` or ``"100000"`` (bytes) as a positive number of bytes; a
    ValueError saying what is wrong otherwise."""
    match = SIZE.fullmatch(text)
    if match is None:
        raise ValueError("not a size: write bytes, or a number with kB, MB, GB, TB (or KiB, MiB, GiB, TiB)")
    unit = (match["unit"] or "").lower()
    size = float(match["number"]) * (BINARY_UNITS[unit] if match["binary"] else UNITS[unit])
    if not (math.isfinite(size) and 1 <= size < 2**63):
        raise ValueError("not a size between 1 byte and 8 EB")
    return int(size)


def format_size(size: float) -> str:
    """Bytes as people write them: ``8 GB``, ``1.5 GB``, ``512 kB``."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size:.0f} B"


def memory_budget(device: torch.device, limit: int | None = None) -> tuple[int, str] | None:
    """(bytes a run may allocate on ``device``, where that figure comes from): ``limit`` (the user's
    --max-memory), else 80% of the device's free memory; None where neither is known."""
    if limit is not None:
        return limit, "--max-memory"
    free = free_memory(device)
    if free is None:
        return None
    where = "this GPU" if device.type == "cuda" else "this machine"
    return int(free * FREE_SHARE), f"{FREE_SHARE:.0%} of the {format_size(free)} {where} has free"
