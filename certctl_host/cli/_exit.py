"""Exit codes of the ``certctl`` command and the errors that choose them.

A script tells "fix your command or config" from "the CA said no" from "try again later"
by the exit code alone; the table is printed by ``certctl --help`` and in ``docs/cli.md``.
"""

from __future__ import annotations

import enum

from certctl_core.errors import (
    CertctlError,
    ConfigError,
    InvalidRequestError,
    NotFoundError,
    PermanentError,
    PluginError,
    TransientError,
)

__all__ = ["ExitCode", "UsageError", "exit_code_for", "EXIT_CODES_HELP"]


class ExitCode(enum.IntEnum):
    """What a ``certctl`` exit status means."""

    OK = 0
    #: A bug: an exception that is not a certctl error (report it).
    UNEXPECTED = 1
    #: Bad flags, unreadable or invalid files, invalid configuration, unknown type or
    #: issuer, a malformed request: fix the command line or the config.
    USAGE = 2
    #: The CA refused the request or answered with something unacceptable (authentication,
    #: policy, rejection): retrying the same request will fail the same way.
    REJECTED = 3
    #: The CA is unreachable, timed out, or answered 429/5xx: retry later.
    UNAVAILABLE = 4
    #: Any other certctl error (an unsupported capability, a closed connector, ...).
    OTHER = 5
    #: ``certctl check`` ran and at least one check failed.
    CHECK_FAILED = 6
    #: Interrupted (Ctrl-C).
    INTERRUPTED = 130


class UsageError(CertctlError):
    """The command line or a file named on it is wrong (exit code 2)."""


def exit_code_for(exc: BaseException) -> ExitCode:
    """The exit code a failure maps to (see :class:`ExitCode`)."""
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    if not isinstance(exc, CertctlError):
        return ExitCode.UNEXPECTED
    if isinstance(exc, UsageError | ConfigError | PluginError | NotFoundError):
        return ExitCode.USAGE
    # A request refused before it left (bad CSR, serial, SANs): the caller's input.
    if isinstance(exc, InvalidRequestError):
        return ExitCode.USAGE
    if isinstance(exc, PermanentError):
        return ExitCode.REJECTED
    if isinstance(exc, TransientError):
        return ExitCode.UNAVAILABLE
    return ExitCode.OTHER


EXIT_CODES_HELP = """\
exit codes:
  0  success
  1  unexpected internal error (a bug; rerun with CERTCTL_DEBUG=1 and report it)
  2  usage or configuration error: bad flags, unreadable/invalid file, invalid config,
     unknown connector type, malformed request (bad CSR, serial, SAN, reason)
  3  the CA rejected the request or its answer (authentication, policy, refusal):
     retrying the same request fails the same way
  4  the CA is unavailable (unreachable, timeout, 429/5xx): retry later
  5  other certctl error (e.g. an operation the connector does not support)
  6  'certctl check' found a failing check
  130 interrupted"""
