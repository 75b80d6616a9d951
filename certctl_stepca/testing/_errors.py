"""Errors raised by the step-ca testing kit.

::

    StepCATestingError (RuntimeError)
    ├── StepCAUnavailableError   go or the step-ca sources are not installed
    ├── StepCABuildError         ``go build`` of the step-ca binary failed
    ├── StepCAStartError         the CA process did not become healthy
    └── StepCAReloadError        a SIGHUP reload was rejected or did not take effect
"""

from __future__ import annotations

__all__ = [
    "StepCABuildError",
    "StepCATestingError",
    "StepCAReloadError",
    "StepCAStartError",
    "StepCAUnavailableError",
]


class StepCATestingError(RuntimeError):
    """Base class of every error the testing kit raises on purpose."""


class StepCAUnavailableError(StepCATestingError):
    """The tools needed to build step-ca (Go, the Debian step-ca sources) are missing."""


class StepCABuildError(StepCATestingError):
    """``go build`` failed; the message carries the tail of its output."""


class StepCAStartError(StepCATestingError):
    """step-ca exited or never answered ``/health``; the message carries the log tail."""


class StepCAReloadError(StepCATestingError):
    """step-ca rejected a new ``ca.json`` on SIGHUP, or the change never became visible."""
