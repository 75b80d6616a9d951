"""A ledger that cannot be written: nothing handed out unrecorded, and the fix is a rerun.

The store's write fails (a full disk, a lock held too long) are not something a test
running as root can provoke on a real file system, so ``SQLiteStore``'s two ledger writes
are replaced by ones that fail; everything else (the CLI, step-ca, the store) is real.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from certctl_host.cli import main
from certctl_host.storage import SQLiteStore, StorageUnavailableError
from tests.cli.conftest import StepCASetup

pytestmark = pytest.mark.stepca


def _data_dir(tmp_path: Path) -> Path:
    async def create() -> None:
        store = await SQLiteStore.open(tmp_path / "data", env={})
        await store.aclose()

    asyncio.run(create())
    return tmp_path / "data"


async def _disk_full(*_args: Any, **_kwargs: Any) -> Any:
    raise StorageUnavailableError("database or disk is full")


def _run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, Any, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def test_issue_writes_nothing_when_the_ledger_cannot_record(
    stepca: StepCASetup,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CERTCTL_SERVER_KEY", raising=False)
    data = _data_dir(tmp_path)
    config = stepca.config_file(tmp_path / "ca.json")
    monkeypatch.setattr(SQLiteStore, "record_issued", _disk_full)
    code, doc, err = _run(
        capsys,
        "issue",
        "--json",
        "--type",
        "stepca",
        "--config",
        config,
        "--data-dir",
        data,
        "--issuer-id",
        "corp",
        "--cn",
        "l.cli.test",
        "--key-out",
        tmp_path / "l.key",
        "--out",
        tmp_path / "l.pem",
    )
    assert code == 5, err
    assert doc["error"]["type"] == "LedgerError"
    assert "could not record it (database or disk is full); no file was written" in err
    assert not (tmp_path / "l.key").exists() and not (tmp_path / "l.pem").exists()


def test_revoke_fails_then_a_rerun_records_when_the_ledger_was_unwritable(
    stepca: StepCASetup,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CERTCTL_SERVER_KEY", raising=False)
    data = _data_dir(tmp_path)
    config = stepca.config_file(tmp_path / "ca.json")
    books = ("--type", "stepca", "--config", config, "--data-dir", data, "--issuer-id", "corp")
    code, doc, err = _run(
        capsys,
        "issue",
        "--json",
        *books,
        "--cn",
        "r.cli.test",
        "--key-out",
        tmp_path / "r.key",
        "--out",
        tmp_path / "r.pem",
    )
    assert code == 0, err
    serial = doc["certificate"]["serial_decimal"]

    with monkeypatch.context() as patch:
        patch.setattr(SQLiteStore, "record_revocation", _disk_full)
        code, doc, err = _run(capsys, "revoke", "--json", *books, "--serial", serial)
    assert code == 5, err
    assert "the CA revoked serial" in err
    assert "run the same revoke again" in err

    code, doc, err = _run(capsys, "revoke", "--json", *books, "--serial", serial)
    assert code == 0, err
    assert doc["already_revoked"] is True  # the CA had it
    assert doc["ledger"] == {"recorded": True, "new_entry": True}  # the ledger gets it now
    code, doc, err = _run(capsys, "status", "--json", *books, "--serial", serial)
    assert (doc["state"], doc["source"]) == ("revoked", "ledger")
