"""The README's first command, run end to end as a subprocess: step-ca, and the fallback."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.cli.conftest import clean_env

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "quickstart.sh"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it is gone once its state is Z or it vanished
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


def _quickstart(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        cwd=ROOT,
        env=env if env is not None else clean_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


@pytest.mark.stepca
def test_quickstart_issues_verifies_renews_revokes_and_cleans_up_when_run(
    tmp_path: Path,
) -> None:
    done = _quickstart("--keep", str(tmp_path))
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    pid = int(re.search(r"step-ca pid (\d+) serving https://127\.0\.0\.1:\d+", out).group(1))  # type: ignore[union-attr]
    server_pid = int(re.search(r"certctl serve pid (\d+) listening on http://127", out).group(1))  # type: ignore[union-attr]
    for expected in (
        "$ certctl serve --data-dir server-data --port 0 --api-token-file api-token",
        "$ PUT http://127.0.0.1:",
        "(Authorization: Bearer ********)",
        "-> 201: serving=True, ocsp=delegated",
        "$ certctl check --data-dir server-data --issuer-id quickstart",
        "all checks passed",
        "$ certctl issue --data-dir server-data --issuer-id quickstart",
        "ledger    recorded in server-data",
        "$ certctl renew --data-dir server-data --issuer-id quickstart",
        "$ certctl revoke --data-dir server-data --issuer-id quickstart",
        "was already revoked",
        "$ openssl ocsp -issuer issuer.pem -cert app.pem",
        "$ openssl ocsp -issuer issuer.pem -cert renewed.pem",
        "Response verify OK",
        "app.pem: good",
        "renewed.pem: revoked",
        "Reason: keyCompromise",
        "==> stopped certctl serve",
        "==> stopped step-ca",
        "==> done:",
    ):
        assert expected in out, expected
    assert out.index("==> stopped certctl serve") < out.index("==> stopped step-ca")
    assert not _alive(server_pid)
    assert out.count("verify-leaf.pem: OK") == 2
    assert not _alive(pid)
    [run_dir] = list(tmp_path.iterdir())
    assert (run_dir / "app.pem").is_file() and (run_dir / "renewed.pem").is_file()
    assert (run_dir / "app.key").stat().st_mode & 0o077 == 0

    again = _quickstart()  # re-runnable, in a fresh temporary directory
    assert again.returncode == 0, again.stdout + again.stderr
    workdir = re.search(r"==> working in (\S+)", again.stdout).group(1)  # type: ignore[union-attr]
    assert not Path(workdir).exists()


def test_quickstart_falls_back_to_local_ca_and_says_so_when_step_ca_cannot_be_built(
    tmp_path: Path,
) -> None:
    env = clean_env(CERTCTL_STEP_CA_BINARY=str(tmp_path / "no-step-ca-here"))
    done = _quickstart(env=env)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "step-ca cannot be built on this machine" in out
    assert "using the embedded Local CA instead of step-ca (falling back)" in out
    assert "$ certctl issue --type localca" in out
    assert out.count("verify-leaf.pem: OK") == 2
    assert re.search(r"\$ certctl status .*\n.*: revoked at .* \(keyCompromise\)", out)


@pytest.mark.stepca
def test_quickstart_stops_step_ca_and_server_when_terminated_midway(tmp_path: Path) -> None:
    process = subprocess.Popen(
        ["bash", str(SCRIPT), "--keep", str(tmp_path)],
        cwd=ROOT,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    pids: dict[str, int] = {}
    seen = []
    for line in process.stdout:
        seen.append(line)
        found = re.search(r"(step-ca|certctl serve) pid (\d+)", line)
        if found:
            pids[found.group(1)] = int(found.group(2))
        if len(pids) == 2:
            break
    assert len(pids) == 2, "".join(seen)
    assert all(_alive(pid) for pid in pids.values())
    process.send_signal(signal.SIGTERM)
    rest, err = process.communicate(timeout=120)
    assert process.returncode == 130, "".join(seen) + rest + err
    assert "interrupted; every process started was stopped" in err
    assert not any(_alive(pid) for pid in pids.values()), pids
