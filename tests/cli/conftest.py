"""Drive ``certctl`` as a subprocess (the installed console script) against real CAs.

A session step-ca (the harness, built from Debian's sources, cached) and a fresh Local CA
state directory per test. The environment handed to the CLI is scrubbed of every
``CERTCTL_*`` variable, so tests choose exactly what the command sees.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest

from certctl_stepca.testing import (
    OCSP_RESPONDER_TEMPLATE,
    ProvisionerKey,
    StepCA,
    make_provisioner_key,
    provisioner_entry,
)

CERTCTL = Path(sys.executable).with_name("certctl")
PASSWORD = "cli-provisioner-password-7f3a9c"
LOCAL_PASSWORD = "cli-localca-password-91b2e4"
CLAIMS = {"minTLSCertDuration": "5m", "defaultTLSCertDuration": "24h", "maxTLSCertDuration": "48h"}
#: A second provisioner on the same key whose template makes delegated OCSP responders.
RESPONDER = "certctl-cli-ocsp"


@attrs.frozen
class Run:
    """One finished ``certctl`` run."""

    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self) -> Any:
        return json.loads(self.stdout)

    def __str__(self) -> str:  # shown by pytest when an assert on a Run fails
        return f"certctl {' '.join(self.args)} -> {self.code}\n{self.stdout}\n{self.stderr}"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTCTL_")}
    # Keep the step-ca cache where the rest of the suite has it.
    if "CERTCTL_CACHE_DIR" in os.environ:
        env["CERTCTL_CACHE_DIR"] = os.environ["CERTCTL_CACHE_DIR"]
    env.update(extra)
    return env


def certctl(
    *args: str | Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 120,
) -> Run:
    """Run the ``certctl`` console script; never raises for a non-zero exit."""
    assert CERTCTL.is_file(), f"the console script is not installed at {CERTCTL}"
    argv = tuple(map(str, args))
    completed = subprocess.run(
        [str(CERTCTL), *argv],
        cwd=cwd,
        env=dict(env) if env is not None else clean_env(),
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    return Run(argv, completed.returncode, completed.stdout, completed.stderr)


def openssl(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert shutil.which("openssl"), "openssl is required"
    return subprocess.run(
        ["openssl", *map(str, args)], cwd=cwd, capture_output=True, text=True, check=False
    )


def split_chain(chain_pem: str) -> list[str]:
    end = "-----END CERTIFICATE-----\n"
    return [part + end for part in chain_pem.split(end) if part.strip()]


def verify_chain(tmp_path: Path, chain_file: Path, root: Path) -> subprocess.CompletedProcess[str]:
    """``openssl verify`` of the leaf in ``chain_file`` against ``root``."""
    leaf, *rest = split_chain(chain_file.read_text())
    (tmp_path / "verify-leaf.pem").write_text(leaf)
    (tmp_path / "verify-untrusted.pem").write_text("".join(rest))
    return openssl(
        "verify",
        "-CAfile",
        root,
        "-untrusted",
        tmp_path / "verify-untrusted.pem",
        tmp_path / "verify-leaf.pem",
    )


@attrs.frozen
class StepCASetup:
    process: StepCA
    key: ProvisionerKey
    key_file: Path
    password_file: Path
    directory: Path

    @property
    def root(self) -> Path:
        return self.process.root_file

    def settings(self, **overrides: Any) -> dict[str, Any]:
        config: dict[str, Any] = {
            "ca_url": self.process.url,
            "provisioner_name": self.key.name,
            "provisioner_key_path": str(self.key_file),
            "provisioner_password_file": str(self.password_file),
            "root_cert_path": str(self.root),
            "max_retries": 1,
            "timeout_seconds": 5,
        }
        config.update(overrides)
        return {k: v for k, v in config.items() if v is not None}

    def config_file(self, path: Path, **overrides: Any) -> Path:
        """Write the settings as JSON or TOML, by ``path``'s suffix."""
        settings = self.settings(**overrides)
        if path.suffix == ".toml":
            lines = [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
            path.write_text("\n".join(lines) + "\n")
        else:
            path.write_text(json.dumps(settings))
        return path

    def env(self, **extra: str) -> dict[str, str]:
        """The same settings through ``CERTCTL_STEPCA_*`` only (an empty value drops one)."""
        settings = {
            "CERTCTL_STEPCA_URL": self.process.url,
            "CERTCTL_STEPCA_PROVISIONER": self.key.name,
            "CERTCTL_STEPCA_KEY_PATH": str(self.key_file),
            "CERTCTL_STEPCA_PASSWORD_FILE": str(self.password_file),
            "CERTCTL_STEPCA_ROOT": str(self.root),
            **extra,
        }
        return clean_env(**{k: v for k, v in settings.items() if v})


@pytest.fixture(scope="session")
def stepca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StepCASetup]:
    directory = tmp_path_factory.mktemp("cli-stepca")
    key = make_provisioner_key("certctl-cli", PASSWORD)
    responder = provisioner_entry(key, claims=CLAIMS, x509_template=OCSP_RESPONDER_TEMPLATE)
    responder["name"] = RESPONDER
    process = StepCA.create(
        directory / "ca", provisioners=[provisioner_entry(key, claims=CLAIMS), responder]
    )
    with process:
        yield StepCASetup(
            process=process,
            key=key,
            key_file=key.write_key_file(directory / "provisioner.json"),
            password_file=key.write_password_file(directory / "password.txt"),
            directory=directory,
        )


@pytest.fixture
def stepca_config(stepca: StepCASetup, tmp_path: Path) -> Path:
    return stepca.config_file(tmp_path / "stepca.json")


@pytest.fixture
def localca_config(tmp_path: Path) -> Path:
    path = tmp_path / "localca.toml"
    path.write_text(
        f'state_dir = "{tmp_path / "localca-state"}"\nkey_password = "{LOCAL_PASSWORD}"\n'
    )
    return path
