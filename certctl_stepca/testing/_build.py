"""Build a real ``step-ca`` binary offline from Debian's packaged sources, and cache it.

Debian ships the step-ca authority as Go sources (``golang-github-smallstep-certificates-dev``)
without a ``main`` package; :data:`STEPCA_MAIN_GO` is that missing ``main``. It is compiled in
GOPATH mode against ``/usr/share/gocode``, so no network access is needed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ._errors import StepCABuildError, StepCAUnavailableError

__all__ = [
    "DEBIAN_SOURCES_PACKAGE",
    "GOCODE_ROOT",
    "STEPCA_MAIN_GO",
    "default_cache_dir",
    "ensure_step_ca_binary",
]

_log = logging.getLogger(__name__)

#: The Go ``main`` package shipped with the testing kit (package data, ``*.go``).
STEPCA_MAIN_GO: Path = Path(__file__).with_name("stepca_main.go")

#: Debian package holding the step-ca sources.
DEBIAN_SOURCES_PACKAGE = "golang-github-smallstep-certificates-dev"

#: Where Debian installs Go library sources.
GOCODE_ROOT = Path("/usr/share/gocode")

#: Environment variable naming a pre-built step-ca binary to use instead of building one.
BINARY_ENV = "CERTCTL_STEP_CA_BINARY"

#: Environment variable overriding the cache directory.
CACHE_DIR_ENV = "CERTCTL_CACHE_DIR"

# Bump when the build recipe changes in a way the cache key would not otherwise see.
_RECIPE_VERSION = "1"
_INSTALL_HINT = "apt-get install golang-go " + DEBIAN_SOURCES_PACKAGE
_MAIN_PACKAGE = "certctl-stepca-main"
_BUILD_TIMEOUT_S = 900.0
_COLD_BUILD_MESSAGE = (
    "building step-ca from Debian sources (first use only, then cached; 25-80 s)..."
)

# Binaries already resolved by this process, so repeated calls skip `go version`/`dpkg-query`.
_resolved: dict[tuple[str, str | None, str], Path] = {}


def default_cache_dir() -> Path:
    """Return ``$CERTCTL_CACHE_DIR`` if set, else ``~/.cache/certctl``."""
    configured = os.environ.get(CACHE_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "certctl"


def ensure_step_ca_binary(
    *,
    cache_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
    go: str | None = None,
    gocode_root: Path = GOCODE_ROOT,
    go_cache: Path | None = None,
    heartbeat: float | None = None,
) -> Path:
    """Return the path of a cached ``step-ca`` binary, building it on first use.

    The binary lives at ``<cache_dir>/step-ca-<key>/step-ca`` where ``key`` hashes the Go
    source, ``go version`` and the installed Debian package version, so upgrading either
    triggers a rebuild. Builds go to a temporary file that is atomically renamed into place;
    concurrent callers (threads or processes) are serialised by an ``flock`` on a lock file,
    and only one of them builds. The answer is remembered for the rest of the process. If
    ``$CERTCTL_STEP_CA_BINARY`` is set, that file is returned as is.

    Args:
        cache_dir: cache root; default ``$CERTCTL_CACHE_DIR`` or ``~/.cache/certctl``.
        progress: called with a one-line message before a cold build.
        go: the ``go`` executable; default found on ``PATH`` (or ``/usr/lib/go/bin/go``).
        gocode_root: GOPATH entry holding the step-ca sources.
        go_cache: ``GOCACHE`` for the build; default ``<cache_dir>/go-build``.
        heartbeat: with ``progress``, also report every ``heartbeat`` seconds while
            ``go build`` runs (elapsed time, packages compiled so far) and once when it
            is done. ``None`` (the default) keeps the single message before the build.

    Raises:
        StepCAUnavailableError: Go or the step-ca sources are not installed, or
            ``$CERTCTL_STEP_CA_BINARY`` names a missing file.
        StepCABuildError: ``go build`` failed (the message has the tail of its output).
    """
    override = os.environ.get(BINARY_ENV)
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise StepCAUnavailableError(f"${BINARY_ENV}={override} is not an executable file")
        return path

    root = cache_dir if cache_dir is not None else default_cache_dir()
    memo_key = (str(root), go, str(gocode_root))
    known = _resolved.get(memo_key)
    if known is not None and _is_executable(known):
        return known

    go_exe = _find_go(go)
    _check_sources(gocode_root)
    package_version = _debian_package_version()
    go_version = _run_quiet([go_exe, "version"]).strip()
    source = STEPCA_MAIN_GO.read_bytes()
    key = _cache_key(source, go_version, package_version)

    target_dir = root / f"step-ca-{key}"
    binary = target_dir / "step-ca"
    if _is_executable(binary):
        _resolved[memo_key] = binary
        return binary

    target_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(target_dir / ".lock"):
        if _is_executable(binary):  # another builder finished while we waited
            _resolved[memo_key] = binary
            return binary
        if progress is not None:
            progress(_COLD_BUILD_MESSAGE)
        _log.info("building step-ca into %s", binary)
        started = time.monotonic()
        _go_build(
            go_exe=go_exe,
            source=source,
            gocode_root=gocode_root,
            go_cache=go_cache if go_cache is not None else root / "go-build",
            version=package_version,
            binary=binary,
            progress=progress if heartbeat is not None else None,
            heartbeat=heartbeat,
        )
        elapsed = time.monotonic() - started
        _log.info("built step-ca in %.1f s", elapsed)
        if progress is not None and heartbeat is not None:
            progress(f"built step-ca in {elapsed:.0f} s, cached at {binary}")
    _resolved[memo_key] = binary
    return binary


def _find_go(go: str | None) -> str:
    candidates = [go] if go is not None else ["go", "/usr/lib/go/bin/go"]
    for candidate in candidates:
        found = shutil.which(candidate)
        if found is not None:
            return found
    raise StepCAUnavailableError(
        f"the Go toolchain ({candidates[0]!r}) was not found; building step-ca needs it. "
        f"Install it with: {_INSTALL_HINT}"
    )


def _check_sources(gocode_root: Path) -> None:
    commands = gocode_root / "src/github.com/smallstep/certificates/commands/app.go"
    if not commands.is_file():
        raise StepCAUnavailableError(
            f"the step-ca sources were not found ({commands} is missing). "
            f"Install them with: {_INSTALL_HINT}"
        )


def _debian_package_version() -> str:
    """Return the installed version of the sources package, or ``unpackaged``."""
    try:
        completed = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", DEBIAN_SOURCES_PACKAGE],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unpackaged"
    version = completed.stdout.strip()
    return version if completed.returncode == 0 and version else "unpackaged"


def _run_quiet(argv: list[str]) -> str:
    try:
        completed = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise StepCAUnavailableError(
            f"running {argv!r} failed ({exc}); install: {_INSTALL_HINT}"
        ) from exc
    return completed.stdout


def _cache_key(source: bytes, go_version: str, package_version: str) -> str:
    digest = hashlib.sha256()
    for part in (_RECIPE_VERSION.encode(), source, go_version.encode(), package_version.encode()):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()[:16]


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _run_build(
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    progress: Callable[[str], None] | None,
    heartbeat: float | None,
) -> tuple[int, list[str]]:
    """Run ``go build``; return its exit code and output lines.

    With ``progress`` and ``heartbeat``, reports the elapsed time and the number of
    packages compiled (``go build -v`` prints one line per package) every ``heartbeat``
    seconds. Raises StepCABuildError after ``_BUILD_TIMEOUT_S``.
    """
    try:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    except OSError as exc:
        raise StepCABuildError(f"go build of step-ca could not start: {exc}") from exc
    lines: list[str] = []
    assert process.stdout is not None
    stream = process.stdout

    def pump() -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))

    reader = threading.Thread(target=pump, name="go-build-output", daemon=True)
    reader.start()
    started = time.monotonic()
    deadline = started + _BUILD_TIMEOUT_S
    interval = heartbeat if progress is not None and heartbeat else None
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StepCABuildError(
                    f"go build of step-ca timed out after {_BUILD_TIMEOUT_S:.0f} s"
                )
            try:
                process.wait(timeout=min(remaining, interval) if interval else remaining)
                break
            except subprocess.TimeoutExpired:
                if interval and progress is not None:
                    elapsed = time.monotonic() - started
                    packages = sum(1 for line in lines if line and " " not in line)
                    progress(
                        f"still building step-ca: {elapsed:.0f} s, "
                        f"{packages} packages compiled so far"
                    )
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(timeout=5)
        stream.close()
    return process.returncode, lines


def _go_build(
    *,
    go_exe: str,
    source: bytes,
    gocode_root: Path,
    go_cache: Path,
    version: str,
    binary: Path,
    progress: Callable[[str], None] | None = None,
    heartbeat: float | None = None,
) -> None:
    go_cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="certctl-gopath-") as gopath:
        package_dir = Path(gopath) / "src" / _MAIN_PACKAGE
        package_dir.mkdir(parents=True)
        (package_dir / "main.go").write_bytes(source)
        env = {
            key: value
            for key, value in os.environ.items()
            # A user's module settings would break a GOPATH-mode build.
            if key not in {"GOFLAGS", "GOPATH", "GOCACHE", "GO111MODULE", "GOENV", "GOROOT"}
        }
        env.update(
            GO111MODULE="off",
            GOPATH=f"{gopath}{os.pathsep}{gocode_root}",
            GOCACHE=str(go_cache),
            GOENV="off",
        )
        env.setdefault("HOME", gopath)
        fd, tmp_name = tempfile.mkstemp(prefix=".step-ca-", suffix=".tmp", dir=binary.parent)
        os.close(fd)
        tmp_binary = Path(tmp_name)
        try:
            argv = [
                go_exe,
                "build",
                *(["-v"] if progress is not None else []),  # -v names each package compiled
                "-o",
                str(tmp_binary),
                "-ldflags",
                f"-X main.Version={version}",
                ".",
            ]
            returncode, output = _run_build(
                argv, cwd=package_dir, env=env, progress=progress, heartbeat=heartbeat
            )
            if returncode != 0:
                tail = "\n".join(output[-40:])
                raise StepCABuildError(f"go build of step-ca failed (exit {returncode}):\n{tail}")
            tmp_binary.chmod(0o755)
            os.replace(tmp_binary, binary)
        finally:
            tmp_binary.unlink(missing_ok=True)
