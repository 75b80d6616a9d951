"""The reference certctl-server: the issuer API and the PKI (CRL, OCSP) endpoints.

Public API (``certctl serve`` and hosts that mount the app code against exactly this)::

    settings = ServerSettings.from_mapping(config_file_data, os.environ)
    app = create_app(settings)              # ASGI; its lifespan opens the store
    serve(settings, ready=print)            # blocking uvicorn; ready(base_url) once up

See ``docs/server.md`` for the operator guide and ``openapi.json`` for the API.
"""

from __future__ import annotations

from certctl_host.server._app import create_app
from certctl_host.server._routes import load_openapi
from certctl_host.server._serve import serve
from certctl_host.server._settings import ServerSettings

__all__ = ["ServerSettings", "create_app", "load_openapi", "serve"]
