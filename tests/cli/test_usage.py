"""Usage and configuration errors: exit code 2, a message naming the problem, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from certctl_host.cli import build_parser
from tests.cli.conftest import LOCAL_PASSWORD, certctl

COMMANDS = ["plugins", "check", "issue", "renew", "revoke", "status", "chain", "crl", "serve"]


def test_every_command_has_help_with_examples_when_asked() -> None:
    top = certctl("--help")
    assert top.code == 0
    assert "exit codes:" in top.stdout and "examples:" in top.stdout
    for code in ("  2  usage", "  3  the CA rejected", "  4  the CA is unavailable"):
        assert code in top.stdout
    for command in COMMANDS:
        run = certctl(command, "--help")
        assert run.code == 0, run
        assert "examples:" in run.stdout, command
        assert "exit codes:" in run.stdout, command


def test_parser_knows_every_documented_command_when_built() -> None:
    parser = build_parser()
    actions = [a for a in parser._actions if a.dest == "command"]
    assert sorted(actions[0].choices) == sorted(COMMANDS)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["frobnicate"], "invalid choice"),
        (["issue", "--validity", "soon"], "is not a duration"),
        (["issue", "--type", "localca", "--cn", "a.test"], "--key-out is required"),
        (["issue", "--type", "localca"], "say what to certify"),
        (["issue", "--type", "nope", "--cn", "a.test", "--key-out", "k"], "connector type 'nope'"),
        (["check"], "no connector type given"),
        (["revoke", "--type", "localca", "--serial", "0xZZ"], "is not a certificate serial"),
        (["revoke", "--type", "localca", "--serial", "5", "--reason", "bored"], "reason 'bored'"),
        (["revoke", "--type", "localca"], "exactly one of --serial and --cert"),
        (
            [
                "issue",
                "--type",
                "localca",
                "--cn",
                "a.test",
                "--san",
                "not a name",
                "--key-out",
                "k",
            ],
            "not a valid subject alternative name",
        ),
        (["check", "--type", "localca", "--config", "missing.toml"], "cannot read the config file"),
        (["check", "--type", "localca", "--config", "conf.yaml"], "name it *.json or *.toml"),
        (
            ["renew", "--type", "localca", "--cert", "missing.pem", "--key", "k", "--out", "o"],
            "cannot read the certificate file",
        ),
    ],
)
def test_exit_code_is_2_with_a_clear_message_when_usage_is_wrong(
    args: list[str], message: str, tmp_path: Path
) -> None:
    (tmp_path / "conf.yaml").write_text("a: 1\n")
    run = certctl(*args, cwd=tmp_path)
    assert run.code == 2, run
    assert message in run.stderr
    assert "Traceback" not in run.output
    assert list(tmp_path.iterdir()) == [tmp_path / "conf.yaml"]  # nothing written


def test_syntax_error_in_config_gives_position_but_not_content_when_file_is_bad(
    tmp_path: Path,
) -> None:
    (tmp_path / "bad.json").write_text('{"key_password": "' + LOCAL_PASSWORD + '",,}')
    (tmp_path / "bad.toml").write_text(f'key_password = "{LOCAL_PASSWORD}\n')
    for name in ("bad.json", "bad.toml"):
        run = certctl("check", "--type", "localca", "--config", tmp_path / name, "--json")
        assert run.code == 2, run
        assert "line 1" in run.stderr
        assert LOCAL_PASSWORD not in run.output
        doc = run.json()
        assert doc["ok"] is False and doc["error"]["exit_code"] == 2


def test_config_must_be_an_object_when_file_holds_a_list(tmp_path: Path) -> None:
    (tmp_path / "list.json").write_text(json.dumps([1, 2]))
    run = certctl("check", "--type", "localca", "--config", tmp_path / "list.json")
    assert run.code == 2
    assert "must hold one object" in run.stderr


def test_json_error_document_is_the_only_stdout_when_command_fails(tmp_path: Path) -> None:
    run = certctl("check", "--json", "--type", "localca", "--config", tmp_path / "none.json")
    assert run.code == 2
    doc = json.loads(run.stdout)  # exactly one document: json.loads refuses trailing data
    assert doc["error"]["type"] == "UsageError"
    assert run.stderr.startswith("certctl: error: ")


def test_unsupported_capability_exits_5_when_connector_lacks_it(tmp_path: Path) -> None:
    config = tmp_path / "ex.json"
    config.write_text('{"api_token": "example-token-123"}')  # the example plugin's one setting
    run = certctl("crl", "--type", "example", "--config", config, "--out", tmp_path / "x.crl")
    assert run.code == 5, run
    assert "does not support 'crl'" in run.stderr
    assert not (tmp_path / "x.crl").exists()


def test_bad_flag_still_gives_one_json_document_when_json_asked() -> None:
    run = certctl("issue", "--json", "--no-such-flag")
    assert run.code == 2, run
    assert run.json()["error"]["message"] == "unrecognized arguments: --no-such-flag"
    assert run.stderr.startswith("usage: certctl")
