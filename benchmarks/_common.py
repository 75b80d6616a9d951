"""Shared pieces of the benchmark suite: timing, statistics, tables, the machine.

Absolute times on a shared 2-core machine drift by tens of percent from minute to minute;
ratios of two things measured side by side in the same run hold. Every figure here is
therefore reported with the baseline it is compared to, measured in the same process.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = [
    "latency_summary",
    "machine",
    "median",
    "per_call_us",
    "percentile",
    "render_table",
    "timed",
]


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    """Seconds ``fn()`` took, and its result."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """Median, p95 and p99 of per-call latencies, in milliseconds."""
    return {
        "median_ms": round(median(seconds) * 1e3, 3),
        "p95_ms": round(percentile(seconds, 0.95) * 1e3, 3),
        "p99_ms": round(percentile(seconds, 0.99) * 1e3, 3),
    }


def per_call_us(fn: Callable[[], object], count: int, repeats: int = 3) -> float:
    """Microseconds per call of ``fn``: the best of ``repeats`` loops of ``count`` calls.

    The best loop, not the mean, because noise on a shared machine only ever adds time.
    """
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(count):
            fn()
        best = min(best, time.perf_counter() - start)
    return round(best / count * 1e6, 2)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version_of(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    return (out.stdout or out.stderr).strip().splitlines()[0] if out.returncode == 0 else "?"


def machine() -> dict[str, Any]:
    """What the numbers ran on: CPU, cores, load, Python and library versions."""
    from importlib.metadata import PackageNotFoundError, version

    libraries: dict[str, str] = {}
    for name in (
        "cryptography",
        "httpx",
        "httpcore",
        "h2",
        "jwcrypto",
        "starlette",
        "uvicorn",
        "uvloop",
        "httptools",
    ):
        try:
            libraries[name] = version(name)
        except PackageNotFoundError:
            libraries[name] = "not installed"
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "openssl": _version_of(["openssl", "version"]),
        "libraries": libraries,
    }


def render_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table, Markdown-compatible."""
    cells = [[str(c) for c in header], *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [f"\n### {title}\n"]

    def line(row: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    lines.append(line(cells[0]))
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines.extend(line(row) for row in cells[1:])
    lines.append("")
    return "\n".join(lines)
