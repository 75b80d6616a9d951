"""A dns-01 hook for the tests: publishes the TXT record in pebble-challtestsrv.

Called as ``python dns_hook.py present|cleanup`` with the connector's documented
environment; ``CHALLTESTSRV_URL`` names challtestsrv's management address and
``HOOK_LOG`` a file that records each call (``HOOK_FAIL=present`` makes that action fail,
printing ``HOOK_FAIL_OUTPUT`` if set); ``HOOK_LOG.env`` gets the names of the variables
the hook inherited. The connector passes only what its ``dns_hook_env`` names
(``conftest.HOOK_ENV``).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request


def main() -> int:
    action = sys.argv[1]
    name = os.environ["CERTCTL_ACME_TXT_NAME"]
    value = os.environ["CERTCTL_ACME_TXT_VALUE"]
    with open(os.environ["HOOK_LOG"], "a", encoding="utf-8") as log:
        log.write(f"{action} {os.environ['CERTCTL_ACME_DOMAIN']} {name} {value}\n")
    with open(os.environ["HOOK_LOG"] + ".env", "a", encoding="utf-8") as names:
        names.write(" ".join(sorted(os.environ)) + "\n")
    if os.environ.get("HOOK_FAIL") == action:
        print(os.environ.get("HOOK_FAIL_OUTPUT", "refused by the test"), file=sys.stderr)
        return 3
    path = "/set-txt" if action == "present" else "/clear-txt"
    body = {"host": name, "value": value} if action == "present" else {"host": name}
    request = urllib.request.Request(
        os.environ["CHALLTESTSRV_URL"] + path,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        answer.read()
    return 0


if __name__ == "__main__":
    sys.exit(main())
