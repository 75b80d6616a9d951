"""The dependency direction: the core imports nothing outward; the host never names an adapter.

``certctl_core`` (port, domain, errors, policy, registry, plugin host, hook specs, base
class, revocation encoding) imports no adapter, no host module, no HTTP client, JOSE
library, web framework or database driver, with no exemption. The host
(``certctl_host``) reaches adapters only through the registry and plugin metadata. No
module of either imports the other in a circle.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import certctl_core
import certctl_host

CORE_DIR = Path(certctl_core.__file__).resolve().parent
HOST_DIR = Path(certctl_host.__file__).resolve().parent
REPO_ROOT = CORE_DIR.parent

ADAPTERS = frozenset({"certctl_stepca", "certctl_localca", "certctl_example", "certctl_acme"})
#: Connector type names the host must never branch on.
TYPE_NAMES = ("stepca", "localca", "acme", "example")
#: What the core must never import, statically or at run time.
CORE_FORBIDDEN = ADAPTERS | frozenset(
    {
        "certctl_host",
        "certctl_contracts",
        "httpx",
        "httpcore",
        "h11",
        "jwcrypto",
        "starlette",
        "fastapi",
        "uvicorn",
        "sqlite3",
        "psycopg",
        "asyncpg",
    }
)
#: Network modules the core must not import itself (asyncio loads them at run time).
CORE_FORBIDDEN_STATIC = CORE_FORBIDDEN | {"ssl", "socket"}

CORE_MODULES = sorted(
    "certctl_core" + ("." + ".".join(p.relative_to(CORE_DIR).with_suffix("").parts))
    if p.name != "__init__.py" or p.parent != CORE_DIR
    else "certctl_core"
    for p in CORE_DIR.rglob("*.py")
)
CORE_MODULES = sorted({m.removesuffix(".__init__") for m in CORE_MODULES})

PROBE = """
import importlib, json, sys
module = importlib.import_module(sys.argv[1])
print(json.dumps({"file": module.__file__, "modules": sorted(sys.modules)}))
"""


def test_every_core_module_is_probed() -> None:
    assert {"certctl_core", "certctl_core.registry", "certctl_core.host"} <= set(CORE_MODULES)
    assert len(CORE_MODULES) >= 15


@pytest.mark.parametrize("module", CORE_MODULES)
def test_no_adapter_host_or_io_library_is_loaded_when_core_module_is_imported(
    module: str,
) -> None:
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
    assert Path(report["file"]).resolve().is_relative_to(CORE_DIR)
    loaded = {name.partition(".")[0] for name in report["modules"]}
    assert loaded & CORE_FORBIDDEN == set()


def _imported(tree: ast.AST, package: str | None = None) -> set[str]:
    """Dotted module names a module imports (relative imports resolved against package)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level and package:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value)
    return names


def _roots(names: set[str]) -> set[str]:
    return {name.partition(".")[0] for name in names}


def _sources(directory: Path) -> dict[str, ast.AST]:
    root = directory.name
    out: dict[str, ast.AST] = {}
    for path in sorted(directory.rglob("*.py")):
        parts = path.relative_to(directory).with_suffix("").parts
        name = ".".join((root, *parts)).removesuffix(".__init__")
        out[name] = ast.parse(path.read_text(), filename=str(path))
    return out


def test_no_core_module_imports_outward_when_read_statically() -> None:
    offenders = {
        name: sorted(bad)
        for name, tree in _sources(CORE_DIR).items()
        if (bad := _roots(_imported(tree)) & CORE_FORBIDDEN_STATIC)
    }
    assert offenders == {}


def test_no_host_module_imports_an_adapter_when_read_statically() -> None:
    offenders = {
        name: sorted(bad)
        for name, tree in _sources(HOST_DIR).items()
        if (bad := _roots(_imported(tree)) & ADAPTERS)
    }
    assert offenders == {}


def test_no_host_module_names_an_adapter_type_when_read_statically() -> None:
    """Branching on a type name (``if type == "localca"``) is what ConnectorType is for."""
    offenders: dict[str, list[str]] = {}
    for name, tree in _sources(HOST_DIR).items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                literals = [
                    c.value
                    for c in [node.left, *node.comparators]
                    if isinstance(c, ast.Constant) and c.value in TYPE_NAMES
                ]
                if literals:
                    offenders.setdefault(name, []).extend(map(str, literals))
            elif isinstance(node, ast.Set | ast.List | ast.Tuple) and any(
                isinstance(e, ast.Constant) and e.value in TYPE_NAMES for e in node.elts
            ):
                offenders.setdefault(name, []).append(ast.unparse(node))
    assert offenders == {}


def test_every_adapter_package_is_known() -> None:
    """A new adapter package must join ADAPTERS, or the checks above miss it."""
    packages = {p.name for p in REPO_ROOT.glob("certctl_*") if (p / "__init__.py").is_file()}
    others = {"certctl_core", "certctl_host", "certctl_contracts"}
    assert packages - others <= ADAPTERS
    assert "certctl_acme" in packages


@pytest.mark.parametrize("adapter", sorted(a for a in ADAPTERS if (REPO_ROOT / a).is_dir()))
def test_no_adapter_imports_another_adapter_when_read_statically(adapter: str) -> None:
    """Adapters share code through the core (or a testing kit), never each other.

    Exception: an adapter's ``testing`` module may use another adapter's testing kit
    (the ACME tests run step-ca through ``certctl_stepca.testing``)."""
    directory = REPO_ROOT / adapter
    offenders = {
        name: sorted(bad)
        for name, tree in _sources(directory).items()
        if not name.endswith(".testing")
        and (bad := _roots(_imported(tree)) & (ADAPTERS - {adapter}))
    }
    assert offenders == {}


@pytest.mark.parametrize("directory", [CORE_DIR, HOST_DIR], ids=["core", "host"])
def test_no_import_circle_between_modules_when_read_statically(directory: Path) -> None:
    sources = _sources(directory)
    # Module-level imports only: a function-local import is a deliberate late binding.
    graph = {
        name: {
            dep
            for dep in _imported(ast.Module(body=list(tree.body), type_ignores=[]), name)  # type: ignore[attr-defined]
            if dep in sources and dep != name
        }
        for name, tree in sources.items()
    }
    for name in graph:  # a package __init__ re-exporting its submodules is no circle
        graph[name] -= {
            d for d in graph[name] if name != directory.name and d.startswith(name + ".")
        }

    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append([*path[path.index(dep) :], dep] if dep in path else [node, dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import httpx", {"httpx"}),
        ("import jwcrypto.jwk as jwk", {"jwcrypto"}),
        ("from certctl_stepca.config import X", {"certctl_stepca"}),
        ("def f():\n    import uvicorn", {"uvicorn"}),
        ("import importlib\nimportlib.import_module('fastapi.routing')", {"fastapi"}),
        ("import sqlite3", {"sqlite3"}),
        ("from certctl_host.storage import Store", {"certctl_host"}),
        ("from . import domain", set()),
        ("import attrs", set()),
    ],
)
def test_static_scan_finds_forbidden_imports_when_present(source: str, expected: set[str]) -> None:
    assert _roots(_imported(ast.parse(source))) & CORE_FORBIDDEN == expected
