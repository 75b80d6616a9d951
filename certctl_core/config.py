"""One config reader for connectors and hosts: every problem at once, each with a hint.

Build a :class:`ConfigReader` over the raw mapping (and the environment), read each
setting with a typed getter, then call :meth:`ConfigReader.finish`::

    read = ConfigReader(raw, env, known={"url", "timeout"}, connector="mine")
    url = read.text("url", env="MINE_URL", required=True)
    timeout = read.number("timeout", 0.1, 600, default=10.0)
    read.finish()  # one ConfigError listing every problem, unknown keys included

Getters never raise: a bad value becomes a :class:`ConfigProblem` and the getter returns
the default (or None). An explicit setting wins over its environment variable; ``None``
and a blank string count as "not set". Strings are parsed for numbers and flags, since
the environment gives nothing else. Messages never contain a secret's value.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, overload

import attrs

from certctl_core.domain import Secret
from certctl_core.errors import ConfigError, ConfigProblem
from certctl_core.files import FileTooLargeError, NotRegularFileError, read_regular_file

__all__ = ["ConfigReader"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})
_MAX_PATH = 4096  # PATH_MAX on Linux: longer cannot be opened anyway
_MAX_SECRET_FILE = 64 * 1024  # bounded read of a regular file (devices are refused)


def _environ(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


@attrs.define
class ConfigReader:
    """Reads settings from ``raw`` (falling back to ``env``), collecting problems.

    Raises ConfigError at once when ``raw`` is not a mapping (nothing can be read);
    keys not in ``known`` are reported, with a did-you-mean hint, at :meth:`finish`.
    """

    raw: Mapping[str, Any] = attrs.field(repr=False)
    env: Mapping[str, str] = attrs.field(default=None, converter=_environ, repr=False)
    known: Collection[str] = attrs.field(default=(), kw_only=True, repr=False)
    connector: str | None = attrs.field(default=None, kw_only=True)
    issuer_id: str | None = attrs.field(default=None, kw_only=True)
    problems: list[ConfigProblem] = attrs.field(factory=list, init=False)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.raw, Mapping):
            self.problem("<config>", f"must be a mapping, got {type(self.raw).__name__}")
            self.finish()
        if self.known:
            self.check_keys(self.raw, self.known)

    def problem(self, field: str, message: str, hint: str | None = None) -> None:
        """Record one problem (for checks only the caller knows)."""
        self.problems.append(ConfigProblem(field, message, hint))

    def check_keys(
        self, mapping: Mapping[Any, Any], known: Collection[str], prefix: str = ""
    ) -> None:
        """Report each key of ``mapping`` not in ``known``, suggesting the closest one."""
        for key in sorted(map(str, mapping)):
            if key not in known:
                close = difflib.get_close_matches(key, list(known), n=1)
                hint = f"did you mean {close[0]!r}?" if close else None
                hint = hint or f"known settings: {', '.join(sorted(known))}"
                self.problem(prefix + key, "is not a known setting", hint)

    def value(self, key: str, env: str | None = None) -> Any:
        """The raw value of ``key``, else environment variable ``env``; None when unset."""
        found = self.raw.get(key)
        if found is None and env is not None:
            found = self.env.get(env)
        return None if isinstance(found, str) and not found.strip() else found

    def text(
        self, key: str, *, env: str | None = None, required: bool = False, hint: str | None = None
    ) -> str | None:
        """A string setting; a missing required one is a problem (hint names ``env``)."""
        found = self.value(key, env)
        if found is None:
            if required:
                where = f" or set {env}" if env else ""
                self.problem(key, "is required", hint or f"add {key!r}{where}")
            return None
        if not isinstance(found, str | os.PathLike):
            self.problem(key, f"must be a string, got {type(found).__name__}")
            return None
        return os.fspath(found)

    def path(
        self, key: str, *, env: str | None = None, required: bool = False, hint: str | None = None
    ) -> Path | None:
        """A file system path, ``~`` expanded; a NUL byte or an overlong path is a problem."""
        found = self.text(key, env=env, required=required, hint=hint)
        if found is None:
            return None
        if len(os.fsencode(found)) > _MAX_PATH:
            self.problem(key, f"is longer than {_MAX_PATH} bytes")
            return None
        try:
            if "\x00" not in found:
                return Path(found).expanduser()
        except RuntimeError:  # ~someone who does not exist
            pass
        self.problem(key, f"{found!r} is not a usable path (NUL byte or unknown ~user)")
        return None

    def flag(self, key: str, *, env: str | None = None, default: bool = False) -> bool:
        """A boolean: true/false, or a word such as yes/no/on/off/1/0."""
        found = self.value(key, env)
        if found is None or isinstance(found, bool):
            return default if found is None else found
        word = found.strip().lower() if isinstance(found, str) else None
        if word in _TRUE | _FALSE:
            return word in _TRUE
        self.problem(key, f"must be true or false, got {found!r}")
        return default

    @overload
    def number(
        self,
        key: str,
        minimum: float,
        maximum: float,
        *,
        default: float,
        integer: bool = ...,
        env: str | None = ...,
    ) -> float: ...
    @overload
    def number(
        self,
        key: str,
        minimum: float,
        maximum: float,
        *,
        default: None = ...,
        integer: bool = ...,
        env: str | None = ...,
    ) -> float | None: ...
    def number(
        self,
        key: str,
        minimum: float,
        maximum: float,
        *,
        default: float | None = None,
        integer: bool = False,
        env: str | None = None,
    ) -> float | None:
        """A number from ``minimum`` to ``maximum`` (an ``int`` when ``integer``)."""
        found = self.value(key, env)
        if found is None:
            return default
        parsed = found
        if isinstance(found, str):
            try:
                parsed = float(found)
            except ValueError:
                parsed = None
        if (
            isinstance(parsed, bool)
            or not isinstance(parsed, int | float)
            or not minimum <= parsed <= maximum  # also refuses NaN and infinity
            or (integer and parsed != int(parsed))
        ):
            kind = "an integer" if integer else "a number"
            self.problem(key, f"must be {kind} from {minimum:g} to {maximum:g}, got {found!r}")
            return default
        return int(parsed) if integer else float(parsed)

    def secret(
        self,
        key: str,
        *,
        file_key: str,
        env: str | None = None,
        file_env: str | None = None,
        hint: str | None = None,
    ) -> Secret | None:
        """A secret given inline (``key``) or in a file (``file_key``), exactly one.

        Naming either key in the config ignores both environment variables. A file's
        trailing line ending is removed. A missing secret is a problem hinted by ``hint``.
        """
        if self.raw.get(key) is not None or self.raw.get(file_key) is not None:
            env = file_env = None  # the config chose this secret's source
        inline = self.value(key, env)
        if isinstance(inline, Secret) and not inline:
            inline = None
        file = self.path(file_key, env=file_env)
        if inline is not None and (file is not None or self.value(file_key, file_env)):
            self.problem(key, f"both {key} and {file_key} are set", "keep one of them")
            return None
        if file is not None:
            return self._secret_file(file_key, file)
        if isinstance(inline, Secret):
            return inline
        if inline is None:
            if self.value(file_key, file_env) is None:
                self.problem(key, "is required", hint)
            return None
        if not isinstance(inline, str):
            self.problem(key, f"must be a string, got {type(inline).__name__}")
            return None
        return Secret(inline)

    def _secret_file(self, key: str, file: Path) -> Secret | None:
        try:
            text = read_regular_file(file, _MAX_SECRET_FILE).decode("utf-8")
        except NotRegularFileError:
            self.problem(
                key,
                f"{str(file)!r} is not a regular file (a FIFO, socket or device)",
                "write the secret to a plain file: a pipe or device could block the reader",
            )
            return None
        except FileTooLargeError:
            self.problem(key, f"{file} is too large for a secret")
            return None
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            if isinstance(exc, ValueError) and not isinstance(exc, UnicodeDecodeError):
                reason = "the path contains a NUL byte"
            hint = "check the path and that certctl may read it"
            self.problem(key, f"cannot read {str(file)!r}: {reason}", hint)
            return None
        text = text.removesuffix("\n").removesuffix("\r")
        if not text:
            self.problem(key, f"{file} is empty")
            return None
        return Secret(text)

    def finish(self) -> None:
        """Raise one ConfigError listing every problem, if there is any."""
        if self.problems:
            raise ConfigError(self.problems, issuer_id=self.issuer_id, connector=self.connector)
