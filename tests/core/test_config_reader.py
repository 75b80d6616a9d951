"""ConfigReader: every problem at once, hints kept, secrets never shown, env precedence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from certctl_core import ConfigError, ConfigReader, Secret

KNOWN = ("url", "timeout", "retries", "enabled", "state_dir", "password", "password_file")
SECRET = "hunter2-very-secret"


def problems(read: ConfigReader) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        read.finish()
    assert len(caught.value.problems) == len(read.problems)
    return {p.field: str(p) for p in caught.value.problems}


def test_every_problem_is_reported_at_once_when_several_values_are_bad() -> None:
    read = ConfigReader(
        {"timeout": "soon", "retries": 2.5, "enabled": "maybe", "state_dir": "a\x00b"},
        {},
        known=KNOWN,
        connector="mine",
    )
    read.text("url", required=True)
    read.number("timeout", 0.1, 600, default=10.0)
    read.number("retries", 0, 10, default=2, integer=True)
    read.flag("enabled")
    read.path("state_dir")
    found = problems(read)
    assert set(found) == {"url", "timeout", "retries", "enabled", "state_dir"}
    assert "add 'url'" in found["url"]
    assert "an integer from 0 to 10" in found["retries"]


def test_unknown_key_is_reported_with_a_suggestion_alongside_bad_values() -> None:
    read = ConfigReader({"timout": 3, "retries": "many", "zzz": 1}, {}, known=KNOWN)
    read.number("retries", 0, 10, default=2, integer=True)
    found = problems(read)
    assert set(found) == {"timout", "retries", "zzz"}
    assert "did you mean 'timeout'?" in found["timout"]
    assert "known settings: enabled" in found["zzz"]


def test_non_mapping_is_refused_when_the_reader_is_built() -> None:
    with pytest.raises(ConfigError, match="must be a mapping") as caught:
        ConfigReader(["url"], {}, connector="mine")  # type: ignore[arg-type]
    assert caught.value.connector == "mine"


def test_explicit_config_wins_over_environment_and_environment_fills_gaps() -> None:
    env = {"URL": "https://env.example", "TIMEOUT": "7", "ENABLED": "yes"}
    read = ConfigReader({"url": "https://config.example"}, env, known=KNOWN)
    assert read.text("url", env="URL") == "https://config.example"
    assert read.number("timeout", 0.1, 600, default=10.0, env="TIMEOUT") == 7.0
    assert read.flag("enabled", env="ENABLED") is True
    read.finish()


def test_blank_values_count_as_unset_when_read() -> None:
    read = ConfigReader({"url": "  "}, {"URL": "https://env.example", "TIMEOUT": ""})
    assert read.text("url", env="URL") is None  # an explicit setting still wins
    assert read.number("timeout", 1, 2, default=1.5, env="TIMEOUT") == 1.5
    read.finish()


def test_path_expands_home_and_refuses_overlong_paths(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    read = ConfigReader({"state_dir": "~/ca", "url": "/" + "x" * 5000})
    assert read.path("state_dir") == tmp_path / "ca"
    assert read.path("url") is None
    assert "longer than 4096 bytes" in problems(read)["url"]


def test_secret_never_appears_in_messages_or_repr(tmp_path: Path) -> None:
    read = ConfigReader(
        {"password": SECRET, "password_file": str(tmp_path / "pw"), "retries": "many"},
        {"ENV_PASSWORD": SECRET},
        known=KNOWN,
    )
    assert read.secret("password", file_key="password_file", env="ENV_PASSWORD") is None
    read.number("retries", 0, 10, default=2)
    with pytest.raises(ConfigError) as caught:
        read.finish()
    assert "keep one of them" in str(caught.value)
    assert len(caught.value.problems) == 2
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value.problems)
    assert SECRET not in repr(read)


def test_secret_comes_from_file_or_environment_and_config_choice_ignores_environment(
    tmp_path: Path,
) -> None:
    (tmp_path / "pw").write_text(SECRET + "\n")
    read = ConfigReader({"password_file": str(tmp_path / "pw")}, {"PW": "from-env"})
    assert read.secret("password", file_key="password_file", env="PW") == Secret(SECRET)
    read = ConfigReader({}, {"PW": "from-env"})
    assert read.secret("password", file_key="password_file", env="PW") == Secret("from-env")
    read = ConfigReader({}, {})
    assert read.secret("password", file_key="password_file", hint="set it") is None
    assert problems(read) == {"password": "password: is required (hint: set it)"}


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "is empty"), (b"\xff\xfe", "not UTF-8 text"), (b"x" * (64 * 1024 + 1), "too large")],
)
def test_secret_file_problems_are_reported_without_its_content(
    tmp_path: Path, content: bytes, message: str
) -> None:
    (tmp_path / "pw").write_bytes(content)
    read = ConfigReader({"password_file": str(tmp_path / "pw")}, {})
    assert read.secret("password", file_key="password_file") is None
    assert message in problems(read)["password_file"]


def test_numbers_refuse_booleans_nan_and_infinity_when_given() -> None:
    values: dict[str, Any] = {"a": True, "b": float("nan"), "c": "inf", "d": "1e3"}
    read = ConfigReader(values, {})
    for key in "abc":
        assert read.number(key, 0, 10, default=1) == 1
    assert read.number("d", 0, 1000, integer=True) == 1000
    assert set(problems(read)) == {"a", "b", "c"}
