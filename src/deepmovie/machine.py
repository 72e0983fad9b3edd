"""A one-line description of the machine, recorded with every result and benchmark."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


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
