"""What a command prints: one JSON document with ``--json``, readable lines otherwise.

Conventions: with ``--json`` stdout carries exactly one JSON document, also on failure
(``{"ok": false, "error": {...}}``), and nothing else. Without it, a command whose main
output is PEM data (``issue`` without ``--out``, ``chain``) prints the PEM on stdout and
its summary on stderr, so ``certctl chain > ca.pem`` works; other commands print their
summary on stdout. Errors always go to stderr as ``certctl: error: ...`` plus a hint.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any, TextIO

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from certctl_core.domain import SubjectAltNames, format_serial_hex
from certctl_core.errors import (
    AuthenticationError,
    CAUnavailableError,
    CertctlError,
    ConfigError,
    PermanentError,
    TransientError,
    UnsupportedCapabilityError,
)
from certctl_host.cli._exit import ExitCode, exit_code_for

__all__ = ["Result", "certificate_summary", "emit_error", "emit_result", "error_document"]


@attrs.frozen
class Result:
    """A command's outcome: the JSON document, the human lines, optional PEM for stdout."""

    document: dict[str, Any]
    lines: Sequence[str] = ()
    data: str | None = None
    code: ExitCode = ExitCode.OK
    #: Printed its JSON already (``serve`` announces itself when listening).
    silent_json: bool = False


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def certificate_summary(cert: x509.Certificate) -> dict[str, Any]:
    """The fields an operator checks first, JSON-ready."""
    try:
        sans = SubjectAltNames.of(cert).as_strings()
    except ValueError:
        sans = []
    return {
        "serial_hex": format_serial_hex(cert.serial_number),
        "serial_decimal": str(cert.serial_number),
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "sans": sans,
        "not_before": _iso(cert.not_valid_before_utc),
        "not_after": _iso(cert.not_valid_after_utc),
        "sha256": cert.fingerprint(hashes.SHA256()).hex(),
    }


def pem_of(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def emit_result(result: Result, *, json_mode: bool, stdout: TextIO, stderr: TextIO) -> None:
    if json_mode:
        if result.silent_json:
            return
        stdout.write(json.dumps({"ok": result.code == ExitCode.OK, **result.document}, indent=2))
        stdout.write("\n")
        return
    summary_to = stderr if result.data is not None else stdout
    for line in result.lines:
        summary_to.write(f"{line}\n")
    if result.data is not None:
        stdout.write(result.data)
    stdout.flush()


def error_document(exc: BaseException) -> dict[str, Any]:
    """The ``error`` member of a failed command's JSON document."""
    code = exit_code_for(exc)
    doc: dict[str, Any] = {"exit_code": int(code), "type": type(exc).__name__}
    if isinstance(exc, CertctlError):
        doc |= {
            "message": exc.message,
            "hint": exc.hint,
            "issuer_id": exc.issuer_id,
            "connector": exc.connector,
        }
        if isinstance(exc, ConfigError):
            doc["problems"] = [
                {"field": p.field, "message": p.message, "hint": p.hint} for p in exc.problems
            ]
        if isinstance(exc, PermanentError | CAUnavailableError):
            doc["status"] = exc.status
            doc["ca_message"] = exc.ca_message
        if isinstance(exc, AuthenticationError):
            doc["likely_cause"] = exc.likely_cause
        if isinstance(exc, TransientError):
            doc["retry_after"] = exc.retry_after
    elif isinstance(exc, KeyboardInterrupt):
        doc["message"] = "interrupted"
    else:
        # An unexpected exception's text may quote anything it touched: keep it out.
        doc["message"] = "unexpected internal error"
    return doc


def _error_lines(exc: BaseException) -> list[str]:
    if isinstance(exc, KeyboardInterrupt):
        return ["certctl: interrupted"]
    if not isinstance(exc, CertctlError):
        return [
            f"certctl: error: unexpected internal error ({type(exc).__name__})",
            "certctl: hint: this is a bug; rerun with CERTCTL_DEBUG=1 for a traceback "
            "and report it",
        ]
    where = ""
    if exc.connector or exc.issuer_id:
        where = f"[{exc.connector or '?'} issuer {exc.issuer_id or '?'}] "
    if isinstance(exc, ConfigError):
        noun = "problem" if len(exc.problems) == 1 else "problems"
        lines = [f"certctl: error: {where}invalid configuration, {len(exc.problems)} {noun}:"]
        for problem in exc.problems:
            lines.append(f"  - {problem.field}: {problem.message}")
            if problem.hint:
                lines.append(f"      hint: {problem.hint}")
        return lines
    lines = [f"certctl: error: {where}{exc.message}"]
    ca_message = exc.ca_message if isinstance(exc, PermanentError | CAUnavailableError) else None
    if ca_message and ca_message not in exc.message:
        status = getattr(exc, "status", None)
        lines.append(f"certctl: the CA said{f' {status}' if status else ''}: {ca_message}")
    if isinstance(exc, AuthenticationError) and exc.likely_cause:
        lines.append(f"certctl: likely cause: {exc.likely_cause}")
    if isinstance(exc, TransientError) and exc.retry_after:
        lines.append(f"certctl: retry after {exc.retry_after:g} s")
    if exc.hint:
        lines.append(f"certctl: hint: {exc.hint}")
    elif isinstance(exc, UnsupportedCapabilityError):
        lines.append("certctl: hint: 'certctl plugins' lists each connector type's capabilities")
    return lines


def emit_error(exc: BaseException, *, json_mode: bool, stdout: TextIO, stderr: TextIO) -> None:
    for line in _error_lines(exc):
        stderr.write(f"{line}\n")
    if json_mode:
        stdout.write(json.dumps({"ok": False, "error": error_document(exc)}, indent=2))
        stdout.write("\n")
