"""Progress of a cold step-ca build (the quickstart's longest step), with a stand-in ``go``.

The real build is exercised by tests/stepca_testing; here a script plays ``go`` so the
heartbeat can be driven deterministically: it prints two package names, then waits until
the test, having seen two heartbeats, lets it finish.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from certctl_stepca.testing import ensure_step_ca_binary

FAKE_GO = """#!/bin/sh
if [ "$1" = version ]; then echo "go version go0.0-fake linux/amd64"; exit 0; fi
out=""
while [ $# -gt 0 ]; do [ "$1" = "-o" ] && out="$2"; shift; done
echo "github.com/fake/one"
echo "github.com/fake/two"
while [ ! -e "$CERTCTL_TEST_RELEASE" ]; do sleep 0.02; done
printf '#!/bin/sh\\necho fake step-ca\\n' > "$out"
"""


def _fake_toolchain(tmp_path: Path) -> tuple[Path, Path]:
    go = tmp_path / "go"
    go.write_text(FAKE_GO)
    go.chmod(0o755)
    gocode = tmp_path / "gocode"
    commands = gocode / "src/github.com/smallstep/certificates/commands"
    commands.mkdir(parents=True)
    (commands / "app.go").write_text("package commands\n")
    return go, gocode


def test_heartbeat_reports_elapsed_and_packages_when_build_is_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    go, gocode = _fake_toolchain(tmp_path)
    release = tmp_path / "release"
    monkeypatch.setenv("CERTCTL_TEST_RELEASE", str(release))
    monkeypatch.delenv("CERTCTL_STEP_CA_BINARY", raising=False)
    messages: list[str] = []

    def progress(message: str) -> None:
        messages.append(message)
        if sum("still building" in m for m in messages) >= 2:
            release.touch()

    binary = ensure_step_ca_binary(
        cache_dir=tmp_path / "cache",
        go=str(go),
        gocode_root=gocode,
        go_cache=tmp_path / "go-build",
        progress=progress,
        heartbeat=0.05,
    )
    assert os.access(binary, os.X_OK)
    assert "building step-ca" in messages[0]
    beats = [m for m in messages if m.startswith("still building step-ca")]
    assert len(beats) >= 2
    assert beats[-1].endswith("2 packages compiled so far")
    assert messages[-1].startswith("built step-ca in ") and str(binary) in messages[-1]


def test_single_message_when_no_heartbeat_is_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    go, gocode = _fake_toolchain(tmp_path)
    release = tmp_path / "release"
    release.touch()
    monkeypatch.setenv("CERTCTL_TEST_RELEASE", str(release))
    monkeypatch.delenv("CERTCTL_STEP_CA_BINARY", raising=False)
    messages: list[str] = []
    ensure_step_ca_binary(
        cache_dir=tmp_path / "cache",
        go=str(go),
        gocode_root=gocode,
        go_cache=tmp_path / "go-build",
        progress=messages.append,
    )
    assert len(messages) == 1 and "building step-ca" in messages[0]
