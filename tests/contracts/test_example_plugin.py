"""The example third-party plugin works as a separate, installed distribution.

The repository's test command installs it first::

    pip install --no-deps -e examples/certctl-example-plugin

These tests then check that certctl discovers it through its entry point and that its
own contract tests (the suite, as an outside author runs it) pass in a fresh process.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from certctl_core.host import PluginHost

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "certctl-example-plugin"
DISTRIBUTION = "certctl-example-plugin"
INSTALL = f"pip install --no-deps -e {EXAMPLE.relative_to(EXAMPLE.parents[1])}"


@pytest.fixture(scope="module")
def installed() -> importlib.metadata.Distribution:
    try:
        return importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(f"{DISTRIBUTION} is not installed; the test command must run `{INSTALL}`")


def test_example_plugin_is_a_separate_distribution(
    installed: importlib.metadata.Distribution,
) -> None:
    entry_points = [ep for ep in installed.entry_points if ep.group == "certctl.connectors"]
    assert [(ep.name, ep.value) for ep in entry_points] == [("example", "certctl_example.plugin")]


def test_example_connector_type_is_discovered_via_entry_points(
    installed: importlib.metadata.Distribution,
) -> None:
    host = PluginHost.discover(blocked=())
    assert "example" in host.connector_types, [f.reason for f in host.failures]
    assert host.plugin_of("example") == "example"
    assert host.distributions["example"] == DISTRIBUTION
    assert "example" in host.harnesses()


def test_example_plugin_contract_tests_pass(
    installed: importlib.metadata.Distribution, tmp_path: Path
) -> None:
    report = tmp_path / "report.xml"
    # Run from the example's directory so its own pyproject configures pytest, as it
    # would for its author; PYTHONPATH must not leak this repository's tests in.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--junitxml={report}"],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    cases = list(ET.parse(report).getroot().iter("testcase"))
    skipped = [c.find("skipped") for c in cases if c.find("skipped") is not None]
    assert len(cases) >= 25, "the contract suite did not run in full"
    for skip in skipped:
        assert skip is not None
        assert "does not declare capability" in skip.get("message", ""), skip.get("message")
