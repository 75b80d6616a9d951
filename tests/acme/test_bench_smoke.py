"""The ACME benchmark runs (smoke size) and reports both sides and their ratio."""

from __future__ import annotations

import pytest

from benchmarks import acme_bench

pytestmark = pytest.mark.acme


def test_acme_benchmark_smoke_reports_acme_against_sign() -> None:
    summary = acme_bench.run("smoke")
    for side in ("sign", "acme"):
        assert summary[side]["sequential_per_s"] > 0
        assert summary[side]["client_cpu_ms"] > 0
    assert summary["acme_vs_sign"]["sequential"] > 0
