"""The pytest11 plugin is registered, inert, and has the suite's asserts rewritten."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

from _pytest.assertion.rewrite import AssertionRewritingHook

import certctl_contracts.plugin
import certctl_contracts.suite


def test_plugin_is_registered_under_pytest11() -> None:
    eps = importlib.metadata.entry_points(group="pytest11")
    assert ("certctl_contracts", "certctl_contracts.plugin") in {(e.name, e.value) for e in eps}


def test_plugin_defines_no_hooks_or_fixtures() -> None:
    names = [n for n in vars(certctl_contracts.plugin) if n.startswith("pytest_")]
    assert names == []


def test_importing_the_plugin_imports_no_suite_module() -> None:
    code = (
        "import sys, certctl_contracts.plugin; "
        "print(sorted(m for m in sys.modules if m.startswith('certctl_contracts')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "['certctl_contracts', 'certctl_contracts.plugin']"


def test_suite_modules_are_assert_rewritten() -> None:
    assert isinstance(certctl_contracts.suite.__loader__, AssertionRewritingHook)


def test_a_session_without_a_subclass_collects_nothing(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_nothing.py").write_text(
        "from certctl_contracts import IssuerContract  # imported, not subclassed\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 5, proc.stdout  # 5: no tests collected
