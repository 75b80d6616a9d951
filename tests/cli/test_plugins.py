"""``certctl plugins``: installed types with capabilities, broken and blocked plugins."""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import certctl, clean_env


def _broken_plugin(root: Path) -> dict[str, str]:
    """A distribution whose ``certctl.connectors`` entry point fails to import."""
    dist = root / "certctl_broken_demo-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: certctl-broken-demo\nVersion: 0.1\n"
    )
    (dist / "entry_points.txt").write_text("[certctl.connectors]\nbrokenca = certctl_broken_mod\n")
    (root / "certctl_broken_mod.py").write_text("raise ImportError('needs libfoo 9')\n")
    return clean_env(PYTHONPATH=str(root))


def test_lists_installed_types_with_capabilities_when_run() -> None:
    run = certctl("plugins", "--json")
    assert run.code == 0, run
    types = {t["type"]: t for t in run.json()["types"]}
    assert {"stepca", "localca"} <= set(types)
    assert types["localca"]["capabilities"] == ["crl", "ocsp", "status"]
    assert types["stepca"]["capabilities"] == ["crl"]  # with crl_enabled
    assert types["stepca"]["distribution"] == "certctl-connectors"
    assert types["stepca"]["version"]
    human = certctl("plugins")
    assert "localca" in human.stdout and "capabilities: crl, ocsp, status" in human.stdout


def test_broken_plugin_is_reported_with_reason_when_its_import_fails(tmp_path: Path) -> None:
    env = _broken_plugin(tmp_path)
    run = certctl("plugins", "--json", env=env)
    assert run.code == 0, run
    doc = run.json()
    assert {"stepca", "localca"} <= {t["type"] for t in doc["types"]}  # the others still load
    [failure] = [f for f in doc["failures"] if f["entry_point"] == "brokenca"]
    assert failure["distribution"] == "certctl-broken-demo"
    assert "needs libfoo 9" in failure["reason"]
    human = certctl("plugins", env=env)
    assert "broken plugins (1):" in human.stdout and "needs libfoo 9" in human.stdout

    used = certctl("check", "--type", "brokenca", env=env)
    assert used.code == 2, used
    assert "failed to load" in used.stderr and "needs libfoo 9" in used.stderr


def test_blocked_plugin_is_listed_when_disabled_by_environment(tmp_path: Path) -> None:
    env = _broken_plugin(tmp_path)
    env["CERTCTL_DISABLE_PLUGINS"] = "brokenca"
    doc = certctl("plugins", "--json", env=env).json()
    assert doc["failures"] == []
    assert doc["blocked"] == ["brokenca"]


def _without(root: Path, *modules: str) -> dict[str, str]:
    """An environment in which importing each of ``modules`` fails as if not installed."""
    for module in modules:
        (root / f"{module}.py").write_text(
            f'raise ModuleNotFoundError("No module named {module!r}", name={module!r})\n'
        )
    return clean_env(PYTHONPATH=str(root))


def test_plugin_names_the_extra_to_install_when_its_dependency_is_missing(tmp_path: Path) -> None:
    env = _without(tmp_path, "h11", "jwcrypto")
    run = certctl("plugins", "--json", env=env)
    assert run.code == 0, run
    doc = run.json()
    assert "localca" in {t["type"] for t in doc["types"]}  # needs nothing beyond the core
    [failure] = [f for f in doc["failures"] if f["entry_point"] == "stepca"]
    assert failure["reason"].startswith(("missing dependency 'h11'", "missing dependency 'jwc"))
    assert failure["reason"].endswith("pip install 'certctl-connectors[stepca]'")
    human = certctl("plugins", env=env)
    assert "pip install 'certctl-connectors[stepca]'" in human.stdout
    assert "Traceback" not in human.stdout + human.stderr


def test_serve_names_the_server_extra_when_the_web_stack_is_missing(tmp_path: Path) -> None:
    modules = tmp_path / "modules"
    modules.mkdir()
    env = _without(modules, "starlette", "uvicorn")
    run = certctl("serve", "--data-dir", tmp_path / "data", env=env, timeout=60)
    assert run.code == 2, run
    assert "pip install 'certctl-connectors[server]'" in run.stderr
    assert "Traceback" not in run.stderr
