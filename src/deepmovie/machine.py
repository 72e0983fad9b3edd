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
