"""certctl_stepca: the Smallstep step-ca issuer connector.

Built by the registry from a config mapping (see :mod:`certctl_stepca.config`), or
directly with :func:`build_stepca_issuer`.
"""

from __future__ import annotations

__version__ = "0.1.0"

from certctl_stepca.config import CONNECTOR_NAME, StepCAConfig
from certctl_stepca.connector import StepCAIssuer, build_stepca_issuer

__all__ = ["CONNECTOR_NAME", "StepCAConfig", "StepCAIssuer", "__version__", "build_stepca_issuer"]
