"""Every atheris target of fuzz/ runs briefly (a bounded number of inputs from its seed
corpus and mutations of it) with every test run: a target that no longer starts, or an
input the seeds already reach that crashes, fails here and not only in a nightly fuzz run
(``fuzz/run.sh`` runs them for minutes). atheris is a dev dependency: without it this
test fails, it is not skipped."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TARGETS = {
    "stepca-config": 200,
    "localca-config": 300,
    "keyfile": 100,
    "csr": 300,
    "ocsp": 300,
    "serial": 500,
    "reason": 500,
    "responder": 150,
}


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("atheris") is None:
        pytest.fail("atheris is not installed: run scripts/setup.sh (it is in the dev extra)")
    root = tmp_path_factory.mktemp("fuzz-seeds")
    subprocess.run(
        [sys.executable, str(ROOT / "fuzz" / "seeds.py"), str(root)], check=True, timeout=120
    )
    return root


def test_every_target_is_listed_by_fuzz_run_sh() -> None:
    script = (ROOT / "fuzz" / "run.sh").read_text()
    listed = re.search(r"for target in ([a-z -]+); do", script)
    assert listed is not None
    assert listed.group(1).split() == list(TARGETS)


@pytest.mark.parametrize(("target", "runs"), TARGETS.items())
def test_fuzz_target_runs_without_a_crash(
    seeds: Path, tmp_path: Path, target: str, runs: int
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "fuzz" / "fuzz.py"),
            target,
            f"-runs={runs}",
            "-rss_limit_mb=2048",
            "-timeout=20",
            "-seed=1",
            str(corpus),
            str(seeds / target),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert f"Done {runs} runs" in output, output[-4000:]
    assert not list(tmp_path.glob("crash-*")), output[-4000:]
