"""Write seed corpora for fuzz/fuzz.py: one valid input per target, then let it mutate."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from certctl_stepca.testing import make_provisioner_key
from fuzz.responder import seed_inputs as responder_seeds
from tests.reliability import hostile


def main(root: Path) -> None:
    key = make_provisioner_key("fuzz", "hostile", p2c=1000)
    seeds: dict[str, list[bytes]] = {
        "stepca-config": [
            json.dumps(
                {
                    "ca_url": "https://127.0.0.1:9000",
                    "provisioner_name": "fuzz",
                    "provisioner_key_path": "/nonexistent/key.json",
                    "provisioner_password": "hostile",
                    "root_fingerprint": "ab" * 32,
                    "validity_days": 1,
                }
            ).encode()
        ],
        "localca-config": [
            json.dumps({"state_dir": "/nonexistent/certctl-state", "key_password": "p"}).encode()
        ],
        "keyfile": [key.encrypted_json.encode(), key.encrypted_compact.encode()],
        "csr": [hostile.seed_csr_der()],
        "ocsp": [hostile.seed_ocsp_request()],
        "serial": [b"\x01123456789", b"\x010x1f2e", b"\x01aa:bb:cc"],
        "reason": [b"\x01keyCompromise", b"\x01superseded"],
        "responder": responder_seeds(),
    }
    for target, items in seeds.items():
        directory = root / target
        directory.mkdir(parents=True, exist_ok=True)
        for index, item in enumerate(items):
            (directory / f"seed-{index}").write_bytes(item)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
