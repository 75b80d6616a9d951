"""The dependency direction rule: certctl_core never reaches out to adapters or the web.

Adapters (``certctl_stepca``, ``certctl_localca``) import the core, never the reverse, and
the core's domain and ports import no HTTP client, JOSE library or web framework. Only
driver packages (the CLI in ``certctl_core/cli``, the reference server in
``certctl_core/server``) may.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import certctl_core

CORE_DIR = Path(certctl_core.__file__).resolve().parent
REPO_ROOT = CORE_DIR.parent

FORBIDDEN = frozenset(
    {"httpx", "jwcrypto", "certctl_stepca", "certctl_localca", "starlette", "fastapi", "uvicorn"}
)

#: Paths relative to certctl_core/ that may import forbidden names: driver code only.
DRIVER_PREFIXES = ("cli/", "server/")

CORE_MODULES = [
    "certctl_core",
    "certctl_core.domain",
    "certctl_core.ports",
    "certctl_core.errors",
    "certctl_core.hookspecs",
    "certctl_core.plugins",
    "certctl_core.policy",
    "certctl_core.registry",
    "certctl_core.base",
    "certctl_core.storage",
    "certctl_core.revocation",
]

PROBE = """
import importlib, json, sys
module = importlib.import_module(sys.argv[1])
print(json.dumps({"file": module.__file__, "modules": sorted(sys.modules)}))
"""


@pytest.mark.parametrize("module", CORE_MODULES)
def test_no_adapter_or_web_module_is_loaded_when_core_module_is_imported(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, module],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    # The subprocess must have imported this checkout, not some other installed copy.
    assert report["file"] is not None
    assert Path(report["file"]).resolve().is_relative_to(CORE_DIR)
    loaded = {name.partition(".")[0] for name in report["modules"]}
    assert "certctl_core" in loaded
    assert loaded & FORBIDDEN == set()


def _imported_roots(tree: ast.AST) -> set[str]:
    """Top-level package names a module imports (absolute imports only)."""
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.partition(".")[0])
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            roots.add(node.args[0].value.partition(".")[0])
    return roots


def _is_driver(relative: Path) -> bool:
    return relative.as_posix().startswith(DRIVER_PREFIXES)


def test_no_core_module_imports_adapters_or_web_libraries_when_read_statically() -> None:
    offenders: dict[str, list[str]] = {}
    checked = 0
    for path in sorted(CORE_DIR.rglob("*.py")):
        relative = path.relative_to(CORE_DIR)
        if _is_driver(relative):
            continue
        checked += 1
        bad = _imported_roots(ast.parse(path.read_text(), filename=str(path))) & FORBIDDEN
        if bad:
            offenders[relative.as_posix()] = sorted(bad)

    assert checked >= 8
    assert offenders == {}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import httpx", {"httpx"}),
        ("import jwcrypto.jwk as jwk", {"jwcrypto"}),
        ("from certctl_stepca.config import X", {"certctl_stepca"}),
        ("def f():\n    import uvicorn", {"uvicorn"}),
        ("import importlib\nimportlib.import_module('fastapi.routing')", {"fastapi"}),
        ("from . import domain", set()),
        ("import attrs", set()),
    ],
)
def test_static_scan_finds_forbidden_imports_when_present(source: str, expected: set[str]) -> None:
    assert _imported_roots(ast.parse(source)) & FORBIDDEN == expected


@pytest.mark.parametrize(
    ("relative", "driver"),
    [
        ("cli/_app.py", True),
        ("server/_app.py", True),
        ("cli.py", False),
        ("serverless.py", False),
        ("registry.py", False),
        ("domain.py", False),
    ],
)
def test_only_driver_paths_are_exempt_when_scanned(relative: str, driver: bool) -> None:
    assert _is_driver(Path(relative)) is driver
