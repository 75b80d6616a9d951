"""The dns-01 hook runner alone, with real subprocesses: process group, bounded output."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from certctl_acme._challenges import DnsHook, scrub_output
from certctl_core import RejectedError, TransientError

pytestmark = [pytest.mark.anyio]


def _script(tmp_path: Path, body: str) -> tuple[str, ...]:
    path = tmp_path / "hook.sh"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return (str(path),)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def test_a_hook_that_hangs_is_killed_with_its_children_and_the_error_is_transient(
    tmp_path: Path,
) -> None:
    pidfile = tmp_path / "child.pid"
    hook = DnsHook(_script(tmp_path, f"sleep 60 &\necho $! > {pidfile}\nwait\n"), 0, 0.3)
    with pytest.raises(TransientError, match="did not finish"):
        await hook.present("x.example.test", "token.thumb")
    child = int(pidfile.read_text())
    assert not _alive(child), "the hook's child survived"


async def test_a_hook_flooding_its_output_is_read_to_the_end_and_only_its_tail_kept(
    tmp_path: Path,
) -> None:
    flood = f"{sys.executable} -c \"import sys; sys.stdout.write('x' * (16 << 20))\"\n"
    hook = DnsHook(_script(tmp_path, flood + "echo last words\nexit 4\n"), 0, 30.0)
    with pytest.raises(RejectedError, match="exit status 4") as caught:
        await hook.present("x.example.test", "token.thumb")
    assert caught.value.ca_message is not None
    assert len(caught.value.ca_message) <= 300 and caught.value.ca_message.endswith("last words")


def test_scrub_hides_secret_assignments_and_passed_secret_values() -> None:
    text = "login PASSWORD=hunter22 and 'Authorization: Bearer abc' token zzz-value ok"
    out = scrub_output(text, {"DNS_TOKEN": "zzz-value", "HOME": "/root"})
    assert "hunter22" not in out and "zzz-value" not in out and "PASSWORD=***" in out
    assert "login" in out and "ok" in out


def test_the_hook_environment_is_minimal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERTCTL_SERVER_KEY", "k")
    monkeypatch.setenv("WANTED", "1")
    env = DnsHook(("true",), 0, 1, pass_env=("WANTED", "ABSENT")).environment()
    assert set(env) <= {"PATH", "HOME", "LANG", "LC_ALL", "TZ", "WANTED"} and "WANTED" in env
    assert env["PATH"] == os.environ.get("PATH", os.defpath)
