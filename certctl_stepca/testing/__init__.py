"""A real step-ca on loopback for tests, the contract suite and the quickstart.

Build the binary offline from Debian's sources (:func:`ensure_step_ca_binary`), make a PKI
(:func:`generate_pki`) and JWK provisioner keys (:func:`make_provisioner_key`,
:func:`provisioner_entry`), then run it with :class:`StepCA`::

    key = make_provisioner_key("ci", "secret")
    with StepCA.create(tmp_path, provisioners=[provisioner_entry(key)]) as ca:
        token = mint_token(key, audience=f"{ca.localhost_url}/1.0/sign", subject="a.test")
"""

from __future__ import annotations

from certctl_stepca._keyfile import allow_pbkdf2_iterations
from certctl_stepca.config import parse_go_duration

from ._build import (
    DEBIAN_SOURCES_PACKAGE,
    STEPCA_MAIN_GO,
    default_cache_dir,
    ensure_step_ca_binary,
)
from ._errors import (
    StepCABuildError,
    StepCAReloadError,
    StepCAStartError,
    StepCATestingError,
    StepCAUnavailableError,
)
from ._pki import PKI, generate_pki
from ._process import StepCA
from ._provisioner import (
    KEY_TYPES,
    OCSP_RESPONDER_TEMPLATE,
    ProvisionerKey,
    acme_provisioner_entry,
    make_provisioner_key,
    mint_token,
    provisioner_entry,
)
from ._proxy import Fault, FaultProxy, ProxiedRequest, ProxyFaults, Replacement

__all__ = [
    "DEBIAN_SOURCES_PACKAGE",
    "Fault",
    "FaultProxy",
    "KEY_TYPES",
    "OCSP_RESPONDER_TEMPLATE",
    "PKI",
    "ProxiedRequest",
    "ProxyFaults",
    "STEPCA_MAIN_GO",
    "ProvisionerKey",
    "Replacement",
    "StepCA",
    "StepCABuildError",
    "StepCATestingError",
    "StepCAReloadError",
    "StepCAStartError",
    "StepCAUnavailableError",
    "acme_provisioner_entry",
    "allow_pbkdf2_iterations",
    "default_cache_dir",
    "ensure_step_ca_binary",
    "generate_pki",
    "make_provisioner_key",
    "mint_token",
    "parse_go_duration",
    "provisioner_entry",
]
