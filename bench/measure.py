"""Small measuring helpers: percentiles, resident memory from /proc, free ports."""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Sequence
from pathlib import Path


def percentile(ordered: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile of an already sorted sequence (nan when empty)."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latency_figures(prefix: str, latencies: list[float]) -> dict[str, float]:
    """``{prefix}_p50_s``, ``_p95_s`` and ``_max_s`` of latencies in seconds."""
    ordered = sorted(latencies)
    return {f"{prefix}_p50_s": percentile(ordered, 50), f"{prefix}_p95_s": percentile(ordered, 95),
            f"{prefix}_max_s": ordered[-1] if ordered else math.nan}


def _status_kb(pid: int | str, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(f"{field} not in /proc/{pid}/status")


def rss_mb(pid: int | str = "self") -> float:
    """Current resident set size in MiB."""
    return _status_kb(pid, "VmRSS") / 1024


def peak_rss_mb(pid: int | str = "self") -> float:
    """Peak resident set size (``VmHWM``) in MiB since the process started or the peak was reset."""
    return _status_kb(pid, "VmHWM") / 1024


def reset_peak_rss(pid: int | str = "self") -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux ``clear_refs`` value 5); False if not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def cpu_seconds(pid: int | str = "self") -> float:
    """User plus system CPU time the process has used so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time every core of the machine has spent busy so far (``/proc/stat``: all but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for servers whose URL must be known first)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
