"""``python -m certctl_host.server [settings.json]``: run the server (for tests and quick
starts; operators use ``certctl serve``). Prints ``listening on <url>`` once ready."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from certctl_core.errors import CertctlError
from certctl_host.server import ServerSettings, serve


def main(argv: list[str]) -> int:
    raw = {}
    if argv:
        try:
            raw = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            print(f"certctl server: cannot read settings {argv[0]}: {exc}", file=sys.stderr)
            return 2
    try:
        settings = ServerSettings.from_mapping(raw, os.environ)
    except CertctlError as exc:
        print(f"certctl server: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        serve(settings, ready=lambda url: print(f"listening on {url}", flush=True))
    except CertctlError as exc:
        print(f"certctl server: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
