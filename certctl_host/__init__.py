"""certctl_host: the drivers that run connectors, outside the core.

* :mod:`certctl_host.cli`: the ``certctl`` command line.
* :mod:`certctl_host.server`: the reference certctl-server (issuer API, CRL and OCSP);
  needs the ``server`` extra (``pip install 'certctl-connectors[server]'``).
* :mod:`certctl_host.storage`: the store the server and ``certctl --data-dir`` share.
* :mod:`certctl_host.responder`: the delegated OCSP responder for CAs without one.

A host reaches adapters only through :mod:`certctl_core.host` (plugin discovery and the
registry) and what a :class:`~certctl_core.ConnectorType` declares; it never imports an
adapter or branches on a type name.
"""
