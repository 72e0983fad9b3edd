"""benchmarks/gpu_check.py: its CPU smoke test writes every section without an error, and a run asking
for a GPU where there is none stops with one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
SECTIONS = [
    "## a) CUDA/CPU equivalence of each model family",
    "## b) mf and biased-mf training throughput (ML-20M shape)",
    "## c) ALS sweep time (ML-20M shape)",
    "## d) hybrid (cnn encoder) seconds per iteration (ML-1M shape)",
    "## e) torch.compile on/off for mf (ML-20M shape)",
]


def run_script(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=SCRIPT.parents[1],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def sections(report: str) -> dict[str, list[str]]:
    """Each ``## `` heading of the report and its non-blank lines."""
    found: dict[str, list[str]] = {}
    heading = None
    for line in report.splitlines():
        if line.startswith("## "):
            heading = line
            found[heading] = []
        elif heading is not None and line.strip():
            found[heading].append(line)
    return found


@pytest.mark.slow
def test_quick_cpu_run_writes_every_section_without_an_error(tmp_path):
    out = tmp_path / "report.md"
    done = run_script("--device", "cpu", "--quick", "--out", str(out), timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    report = out.read_text()
    assert report.startswith("# GPU check")
    for field in ("- command:", "- date:", "- machine:", "- versions: torch", "- mode: `--quick`"):
        assert field in report
    found = sections(report)
    assert list(found) == SECTIONS
    for heading, lines in found.items():
        assert lines, f"{heading}: empty"
        assert not lines[-1].startswith("**error**"), f"{heading}: {lines[-1]}"
    assert "**error**" not in report
    assert "CPU compared with CPU" in report  # the report says what its equivalence section means here
    assert "All 15 models pass." in report


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is here: the check would run on it")
def test_without_a_gpu_a_gpu_run_stops_with_one_clear_line(tmp_path):
    out = tmp_path / "report.md"
    done = run_script("--out", str(out), timeout=60)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no CUDA GPU is available" in lines[0] and "--device cpu" in lines[0]
    assert not out.exists()
