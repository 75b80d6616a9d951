"""Coverage-guided fuzzing (atheris/libFuzzer) of certctl's parsers of hostile input.

Usage (from the repository root, after ``pip install -e '.[dev,fuzz]'``)::

    python fuzz/fuzz.py TARGET [libFuzzer flags] [CORPUS_DIR ...]
    python fuzz/fuzz.py csr -max_total_time=60 -rss_limit_mb=2048 /tmp/corpus/csr

Targets: stepca-config, localca-config, keyfile, csr, ocsp, serial, reason, responder
(the delegated OCSP responder, fuzz/responder.py). Each target
calls the same ``check_*`` function as the property tests (tests/reliability/hostile.py):
a value or the typed certctl error is fine; any other exception is a crash, which
libFuzzer reports and saves as ``crash-<sha1>``. ``fuzz/run.sh`` runs every target.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

_INSTRUMENTED = ["certctl_core", "certctl_host", "certctl_stepca", "certctl_localca"]
with atheris.instrument_imports(include=_INSTRUMENTED):
    from certctl_stepca.config import KEYS as STEPCA_KEYS
    from fuzz.responder import check_responder
    from tests.reliability import hostile

# Both connectors' settings: the step-ca ones from its config module, the Local CA's here.
_CONFIG_KEYS = [
    *sorted(STEPCA_KEYS),
    "state_dir",
    "ca_cert_file",
    "ca_key_file",
    "key_password",
    "key_password_file",
    "crl_url",
    "ocsp_url",
    "profiles",
    "reject_unknown_profiles",
]


def _value(fdp: atheris.FuzzedDataProvider, depth: int = 0) -> Any:
    kind = fdp.ConsumeIntInRange(0, 8 if depth < 2 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return fdp.ConsumeBool()
    if kind == 2:
        return fdp.ConsumeInt(9)
    if kind == 3:
        return fdp.ConsumeRegularFloat() if fdp.ConsumeBool() else fdp.ConsumeFloat()
    if kind in (4, 5):
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 64))
    if kind == 6:
        return "https://127.0.0.1:" + str(fdp.ConsumeIntInRange(0, 70000))
    if kind == 7:
        return [_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3))]
    return {
        fdp.ConsumeUnicodeNoSurrogates(8): _value(fdp, depth + 1)
        for _ in range(fdp.ConsumeIntInRange(0, 3))
    }


def _mapping(data: bytes) -> dict[str, Any]:
    """A config mapping: the input as JSON when it is an object, else built from its bytes."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        doc = None
    if isinstance(doc, dict):
        return doc
    fdp = atheris.FuzzedDataProvider(data)
    raw: dict[str, Any] = {}
    for _ in range(fdp.ConsumeIntInRange(0, 8)):
        key = (
            fdp.PickValueInList(_CONFIG_KEYS)
            if fdp.ConsumeBool()
            else fdp.ConsumeUnicodeNoSurrogates(12)
        )
        raw[key] = _value(fdp)
    return raw


def _text_or_int(data: bytes) -> str | int:
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeIntInRange(0, 3) == 0:
        return int(fdp.ConsumeInt(fdp.ConsumeIntInRange(1, 30)))
    return str(fdp.ConsumeUnicodeNoSurrogates(200))


TARGETS: dict[str, Callable[[bytes], None]] = {
    "stepca-config": lambda data: hostile.check_stepca_config(_mapping(data)),
    "localca-config": lambda data: hostile.check_localca_config(_mapping(data)),
    "keyfile": hostile.check_key_file,
    "csr": hostile.check_csr,
    "ocsp": hostile.check_ocsp_request,
    "serial": lambda data: hostile.check_serial(_text_or_int(data)),
    "reason": lambda data: hostile.check_reason(_text_or_int(data)),
    "responder": check_responder,
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: fuzz.py {{{','.join(TARGETS)}}} [libFuzzer flags] [corpus]")
    target = TARGETS[sys.argv.pop(1)]
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
