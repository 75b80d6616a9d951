"""OCSP over HTTP on loopback: the reference server's Local CA endpoint under ``wrk``.

Needs the reference server (``certctl_core.server``) and Debian's ``wrk``; without
either, the part reports ``status: not_run`` with the reason instead of numbers.
"""

from __future__ import annotations

import importlib.util
import shutil
from typing import Any

__all__ = ["run"]


def run(*, seconds: int = 10, connections: int = 16, threads: int = 2) -> dict[str, Any]:
    """Requests per second and latency percentiles of OCSP over HTTP (JSON-ready)."""
    missing = []
    if shutil.which("wrk") is None:
        missing.append("wrk is not installed (apt-get install wrk)")
    if importlib.util.find_spec("certctl_core.server") is None:
        missing.append("the reference server (certctl_core.server) is not in this tree")
    reason = "; ".join(missing) or "not implemented yet"
    return {
        "status": "not_run",
        "reason": reason,
        "table": f"\n### OCSP over HTTP on loopback\n\nnot run: {reason}",
    }
