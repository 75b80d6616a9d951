"""The contract suite has teeth: it fails every deliberately broken adapter where it should.

One pytest subprocess runs the suite against the reference adapter (which must pass
everything) and against every case of ``broken_adapters.BROKEN``, as a connector author
would run it (``class Test...(IssuerContract)``, the pytest11 plugin loaded from the
installed distribution). Its JUnit XML report says which test failed for which adapter.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import attrs
import pytest

from tests.contracts.broken_adapters import BROKEN

REPO = Path(__file__).resolve().parents[2]
REFERENCE = "reference"

_MODULE_HEAD = """
from __future__ import annotations

import pytest

from certctl_contracts import IssuerContract
from tests.contracts.broken_adapters import harness_of
from certctl_contracts.reference import reference_harness


class Test_{reference}(IssuerContract):
    @pytest.fixture
    async def live_issuer(self, tmp_path):
        async with reference_harness(tmp_path) as live:
            yield live
"""

_MODULE_IMPORTS = """
from __future__ import annotations

import pytest

from certctl_contracts import IssuerContract
from tests.contracts.broken_adapters import harness_of
"""

_CLASS = """

class Test_{case}(IssuerContract):{options}
    @pytest.fixture
    async def live_issuer(self, tmp_path):
        async with harness_of({case!r})(tmp_path) as live:
            yield live
"""


@attrs.frozen
class Outcome:
    outcome: str  # passed, failed, error, skipped
    message: str


Results = dict[str, dict[str, list[Outcome]]]  # case -> base test name -> outcomes


def _parse(report: Path) -> Results:
    results: Results = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        cls = case.get("classname", "").rsplit(".", 1)[-1].removeprefix("Test_")
        name = case.get("name", "").split("[", 1)[0]
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = "failed" if child.tag == "failure" else child.tag
                message = child.get("message", "")
                break
        results.setdefault(cls, {}).setdefault(name, []).append(Outcome(outcome, message))
    return results


def _options(case: str) -> str:
    timeout = BROKEN[case].call_timeout
    return "" if timeout is None else f"\n    call_timeout = {timeout!r}\n"


#: Subprocesses run side by side, each with a share of the adapters (the machine has 2
#: cores; the suite is mostly waiting on timeouts and faults).
_SHARDS = 2


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Results:
    cases = sorted(BROKEN)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    runs: list[tuple[Path, subprocess.Popen[str]]] = []
    for shard in range(_SHARDS):
        workdir = tmp_path_factory.mktemp(f"teeth{shard}")
        source = _MODULE_HEAD.format(reference=REFERENCE) if shard == 0 else _MODULE_IMPORTS
        source += "".join(
            _CLASS.format(case=case, options=_options(case)) for case in cases[shard::_SHARDS]
        )
        (workdir / "test_broken_contract.py").write_text(source)
        # Own ini file: the run must not inherit this repository's pytest configuration.
        (workdir / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
        report = workdir / "report.xml"
        proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-q", f"--junitxml={report}", str(workdir)],
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        runs.append((report, proc))
    results: Results = {}
    for report, proc in runs:
        try:
            output, _ = proc.communicate(timeout=600)
        finally:
            proc.kill()
        assert report.exists(), f"the suite did not run:\n{output}"
        results.update(_parse(report))
    return results


def _failed(results: Results, case: str) -> set[str]:
    return {
        name
        for name, outcomes in results.get(case, {}).items()
        if any(o.outcome == "failed" for o in outcomes)
    }


def test_reference_adapter_passes_everything(results: Results) -> None:
    reference = results[REFERENCE]
    bad = {n: o for n, o in reference.items() if any(x.outcome != "passed" for x in o)}
    assert not bad
    assert len(reference) >= 35  # the whole suite ran


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_suite_fails_broken_adapter_on_expected_check(results: Results, case: str) -> None:
    errors = {
        name: [o.message for o in outcomes if o.outcome == "error"]
        for name, outcomes in results[case].items()
        if any(o.outcome == "error" for o in outcomes)
    }
    assert not errors, f"{case}: setup/teardown errors instead of failures: {errors}"
    missed = BROKEN[case].expected_failures - _failed(results, case)
    assert not missed, f"{case}: the suite did not catch it in {sorted(missed)}"
    message = BROKEN[case].message
    if message is not None:
        for name in BROKEN[case].expected_failures:
            texts = [o.message for o in results[case][name] if o.outcome == "failed"]
            assert any(message in text for text in texts), (
                f"{case}: {name} failed without saying {message!r}: {texts}"
            )


def test_capability_skips_name_adapter_and_capability(results: Results) -> None:
    skipped = {
        name: o.message
        for name, outcomes in results["undeclared_crl"].items()
        for o in outcomes
        if o.outcome == "skipped"
    }
    assert set(skipped) == {
        "test_revoked_certificate_is_listed_in_crl",
        "test_ocsp_reports_good_then_revoked",
        "test_ocsp_never_says_good_for_a_never_issued_serial",
        "test_renewal_window_lies_within_the_certificates_validity",
    }
    assert "UndeclaredCrlCA" in skipped["test_revoked_certificate_is_listed_in_crl"]
    assert "'crl'" in skipped["test_revoked_certificate_is_listed_in_crl"]
    assert "'ocsp'" in skipped["test_ocsp_reports_good_then_revoked"]
