"""Suite-wide policy: async tests on asyncio, and no silent skips.

A skipped test is not a pass. The only skips allowed are the contract suite's, for a
capability an adapter does not declare (their reason names the capability); any other
skip (a missing tool, a CA that could not start) fails the run.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.postgres import PostgresCluster, cluster

_unexpected_skips: list[str] = []


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else ""
        if "capability" not in reason:
            _unexpected_skips.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _unexpected_skips and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _unexpected_skips:
        terminalreporter.section("skipped tests fail this run", red=True)
        for line in _unexpected_skips:
            terminalreporter.line(line)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One real PostgreSQL cluster for the test session (Debian's server, started by the
    test as the ``postgres`` user on a free loopback port, stopped at the end)."""
    with cluster() as running:
        yield running
