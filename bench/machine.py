"""What every benchmark records next to its numbers: the machine, its CPU and the device used."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def gpu_name() -> str | None:
    """The CUDA device's name when torch sees one (None otherwise, or when torch is not installed)."""
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def machine_info() -> dict[str, object]:
    """Machine, platform, CPU, cores, load and GPU, for a benchmark's JSON."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"machine": platform.node(), "platform": platform.platform(), "cpu": cpu_name(),
            "cores": os.cpu_count(), "gpu": gpu_name(), "load_average_at_start": load}
