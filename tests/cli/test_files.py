"""The CLI's atomic writes and input parsing, in process."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from certctl_host.cli import UsageError, _files
from certctl_host.cli._files import PendingFile, check_targets, write_files
from certctl_host.cli._keys import parse_duration, parse_san


def test_all_files_staged_before_any_target_changes_when_one_write_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.pem").write_text("old a")
    calls = 0
    real_stage = _files._stage

    def failing_stage(pending: PendingFile) -> Path:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError(28, "No space left on device")
        return real_stage(pending)

    monkeypatch.setattr(_files, "_stage", failing_stage)
    with pytest.raises(UsageError, match="No space left"):
        write_files(
            [PendingFile(tmp_path / "a.pem", b"new a"), PendingFile(tmp_path / "b.pem", b"b")],
            force=True,
        )
    assert (tmp_path / "a.pem").read_text() == "old a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pem"]  # no temporary left


def test_refuses_when_target_appears_after_the_check(tmp_path: Path) -> None:
    target = tmp_path / "cert.pem"
    check_targets([target], force=False)
    target.write_text("written by someone else meanwhile")
    with pytest.raises(UsageError, match="refusing to overwrite"):
        write_files([PendingFile(target, b"ours")], force=False)
    assert target.read_text() == "written by someone else meanwhile"
    assert [p.name for p in tmp_path.iterdir()] == ["cert.pem"]


def test_key_mode_is_0600_from_creation_when_written(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_files([PendingFile(tmp_path / "k.pem", b"key", _files.KEY_MODE)], force=False)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600


def test_check_targets_refuses_missing_directory_and_duplicates(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        check_targets([tmp_path / "nope" / "x.pem"], force=False)
    with pytest.raises(UsageError, match="two different outputs"):
        check_targets([tmp_path / "x.pem", tmp_path / "." / "x.pem"], force=False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("app.example.com", x509.DNSName("app.example.com")),
        ("*.Example.com", x509.DNSName("*.example.com")),
        ("10.0.0.7", x509.IPAddress(ipaddress.ip_address("10.0.0.7"))),
        ("::1", x509.IPAddress(ipaddress.ip_address("::1"))),
        ("ops@example.com", x509.RFC822Name("ops@example.com")),
        ("spiffe://corp/svc", x509.UniformResourceIdentifier("spiffe://corp/svc")),
        ("dns:10.0.0.7", x509.DNSName("10.0.0.7")),
        ("ip:192.0.2.1", x509.IPAddress(ipaddress.ip_address("192.0.2.1"))),
    ],
)
def test_san_type_is_inferred_or_forced_when_parsed(text: str, expected: x509.GeneralName) -> None:
    assert parse_san(text) == expected


@pytest.mark.parametrize("text", ["", "has space.com", "a@b@c", "ip:not-an-ip", "-bad-.com"])
def test_san_is_refused_when_malformed(text: str) -> None:
    with pytest.raises(UsageError):
        parse_san(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90d", 90 * 86400), ("8h", 28800), ("30m", 1800), ("1d12h", 129600), ("1.5h", 5400)],
)
def test_duration_is_parsed_when_well_formed(text: str, seconds: int) -> None:
    assert parse_duration(text) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "8", "h", "0s", "-1h", "8x", "1h 2m", "200000d"])
def test_duration_is_refused_when_malformed(text: str) -> None:
    with pytest.raises(UsageError):
        parse_duration(text)


def test_importing_the_cli_loads_no_adapter_module() -> None:
    probe = "import json, sys, certctl_host.cli; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = {name.partition(".")[0] for name in json.loads(done.stdout)}
    assert loaded & {"certctl_stepca", "certctl_localca", "httpx", "jwcrypto"} == set()
