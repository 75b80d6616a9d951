"""An example certctl connector: a tiny in-process CA (connector type ``example``)."""

from __future__ import annotations

from certctl_example.issuer import ExampleIssuer, build_example_issuer

__all__ = ["ExampleIssuer", "build_example_issuer"]
