"""The ``certctl`` argument parser and entry point."""

from __future__ import annotations

import argparse
import asyncio
import inspect
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from certctl_core import __version__
from certctl_host.cli._commands import COMMANDS
from certctl_host.cli._config import CONFIG_ENV, TYPE_ENV
from certctl_host.cli._exit import EXIT_CODES_HELP, ExitCode, UsageError, exit_code_for
from certctl_host.cli._keys import KEY_TYPES, parse_duration
from certctl_host.cli._output import Result, emit_error, emit_result

__all__ = ["build_parser", "main"]

DEBUG_ENV = "CERTCTL_DEBUG"

_DESCRIPTION = """\
certctl drives a certificate authority through an issuer connector: step-ca, the
built-in Local CA, or any connector a plugin installs ('certctl plugins' lists them).
Every issuer command builds the connector the way certctl-server does (plugin
registry, profile MaxTTL policy, a check of every certificate the CA returns)."""

_MAIN_EPILOG = f"""\
choosing the issuer (every command but 'plugins' and 'serve'):
  --type TYPE       connector type, or ${TYPE_ENV}
  --config FILE     its settings as JSON (*.json) or TOML (*.toml), or ${CONFIG_ENV};
                    settings left out are read by the connector from its environment
                    (step-ca: CERTCTL_STEPCA_URL, _PROVISIONER, _KEY_PATH, _PASSWORD_FILE,
                    _PASSWORD, _ROOT, _ROOT_FINGERPRINT, _VALIDITY_DAYS)
  or, on the reference server's books:
  --data-dir DIR    the server's data directory, or $CERTCTL_DATA_DIR, with
  --issuer-id ID    an issuer stored there (PUT /api/v1/issuers/ID); issue, renew and
                    revoke are recorded in its ledger, which its OCSP answers from

examples:
  certctl plugins
  certctl check --type stepca --config stepca.toml
  certctl issue --type stepca --config stepca.toml --cn app.example.com \\
      --key-out app.key --out app.pem
  certctl renew --type stepca --config stepca.toml --cert app.pem --key app.key --in-place
  certctl revoke --type stepca --config stepca.toml --cert app.pem --reason keyCompromise
  certctl chain --type localca --config localca.toml > ca-chain.pem
  certctl serve --data-dir /var/lib/certctl --api-token-file /etc/certctl/api-token
  certctl revoke --data-dir /var/lib/certctl --issuer-id corp --cert app.pem

output: human-readable by default; --json prints one JSON document on stdout (also on
failure: {{"ok": false, "error": {{...}}}}). Errors go to stderr as 'certctl: error: ...'.

{EXIT_CODES_HELP}

See docs/cli.md for the full reference."""

_EXIT_SHORT = (
    "exit codes: 0 ok, 2 usage/config, 3 CA rejected, 4 CA unavailable, 5 other, "
    "6 check failed (see certctl --help)"
)

_EPILOGS = {
    "plugins": """\
Lists every connector type the installed plugins offer (version, capabilities, plugin,
distribution), the plugins that failed to load with the reason, and those blocked by
CERTCTL_DISABLE_PLUGINS. Exits 0 even when a plugin is broken.

examples:
  certctl plugins
  certctl plugins --json | jq '.failures'""",
    "check": """\
Builds the issuer (validating its settings, decrypting its key) and asks the connector
to diagnose itself and its CA: reachability, pinned TLS root, provisioner, key, clock
skew, duration limits (step-ca); CA certificates, ledger, state directory (Local CA).
Exits 6 when a check fails, 2 when the settings are invalid.

examples:
  certctl check --type stepca --config /etc/certctl/stepca.toml
  CERTCTL_STEPCA_URL=https://ca:9000 ... certctl check --type stepca --json""",
    "issue": """\
From a CSR you made (--csr; your key never leaves you) or from --cn/--san, in which
case certctl generates the key (--key-type, default ec-p256) and writes it to --key-out
with mode 0600. Without --san the CN is also the only SAN. A SAN is read as an IP
address, an email (has '@'), a URI (has '://') or a DNS name; prefix dns:, ip:, email:
or uri: to force the type. The chain (leaf first, then the CA certificates, no root)
goes to --out or, without it, to stdout. Existing files are never replaced without
--force; every file is written to a temporary file and renamed into place.

examples:
  certctl issue --type stepca --config ca.toml --cn app.example.com \\
      --san app.example.com --san 10.0.0.7 --key-out app.key --out app.pem
  certctl issue --type stepca --config ca.toml --csr app.csr --validity 8h > app.pem
  certctl issue --type localca --config local.toml --cn svc --key-out svc.key \\
      --profile tls-server --max-ttl 30d --out svc.pem --json""",
    "renew": """\
Reissues the certificate in --cert for the same subject and SANs. The key: --key FILE
reuses the current key (checked against the certificate), --new-key generates a new one
(same type as the old one unless --key-type), --csr FILE uses a CSR you made (same names
required). The lifetime is the connector's default unless --validity is given. The old
certificate is not revoked (revoke it with reason superseded once the new one is
deployed). --in-place replaces --cert (and, with --new-key, --key) atomically; both files
are staged before either is replaced.

examples:
  certctl renew --type stepca --config ca.toml --cert app.pem --key app.key --in-place
  certctl renew --type stepca --config ca.toml --cert app.pem --key app.key \\
      --new-key --in-place
  certctl renew --type stepca --config ca.toml --cert app.pem --new-key \\
      --key-out app-2.key --out app-2.pem""",
    "revoke": """\
Revokes by --serial (decimal digits, or hex written 0x1f2e.. or 1f:2e:..) or by the
certificate in --cert, with an RFC 5280 reason: unspecified, keyCompromise,
cACompromise, affiliationChanged, superseded, cessationOfOperation, certificateHold,
privilegeWithdrawn, aACompromise (or its code). Revoking a revoked certificate succeeds
and says so ("already_revoked": true).

examples:
  certctl revoke --type stepca --config ca.toml --cert app.pem --reason superseded
  certctl revoke --type stepca --config ca.toml --serial 0x3f:a2:19 --reason keyCompromise""",
    "status": """\
Asks the connector for the revocation status of a serial (capability 'status'; the Local
CA has it, step-ca does not: exit 5).

examples:
  certctl status --type localca --config local.toml --cert app.pem""",
    "chain": """\
Prints the issuing CA chain as PEM (intermediates first, the root last) on stdout, or
writes it to --out. The summary goes to stderr.

examples:
  certctl chain --type stepca --config ca.toml > ca-chain.pem
  certctl chain --type localca --config local.toml --out ca.pem --json""",
    "serve": """\
Runs the reference server until Ctrl-C or SIGTERM: the issuer API (/api/v1, bearer
tokens), OCSP (/.well-known/pki/ocsp/<issuer>) and CRLs (/.well-known/pki/crl/<issuer>).
Settings come from --config (JSON or TOML: data_dir, api_tokens, host, port, ...; see
docs/server.md), the flags above, and CERTCTL_DATA_DIR, CERTCTL_API_TOKENS,
CERTCTL_HOST, CERTCTL_PORT. Prints the URL once it listens (with --json, one JSON line).
Issuer commands given the same --data-dir use the issuers stored there and record in
the ledger the server's OCSP answers from.

examples:
  certctl serve --data-dir /var/lib/certctl --api-token-file /etc/certctl/api-token
  certctl serve --config server.toml --port 0 --json""",
    "crl": """\
Writes the issuer's current CRL to --out, DER by default or PEM with --pem (capability
'crl'; the Local CA has it, step-ca 0.19 does not: exit 5).

examples:
  certctl crl --type localca --config local.toml --out ca.crl
  openssl crl -inform DER -in ca.crl -noout -text""",
}

_HELP = {
    "plugins": "list connector types and broken plugins",
    "check": "diagnose an issuer and its CA",
    "issue": "issue a certificate from a CSR or for --cn/--san with a new key",
    "renew": "reissue a certificate for the same names",
    "revoke": "revoke a certificate by serial or file",
    "status": "revocation status of a serial (connectors with 'status')",
    "chain": "print the issuing CA chain",
    "crl": "write the current CRL (connectors with 'crl')",
    "serve": "run the reference server (issuer API, OCSP, CRL)",
}


def _duration(text: str) -> Any:
    from certctl_host.cli._exit import UsageError

    try:
        return parse_duration(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(f"{exc.message} ({exc.hint})") from None


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print one JSON document on stdout instead of text",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,
        help="log connector activity to stderr (-vv debug, -vvv wire; never secrets)",
    )


def _issuer_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("issuer")
    group.add_argument("--type", metavar="TYPE", help=f"connector type (default ${TYPE_ENV})")
    group.add_argument(
        "--config",
        metavar="FILE",
        type=Path,
        help=f"connector settings, *.json or *.toml (default ${CONFIG_ENV}, else environment)",
    )
    group.add_argument(
        "--issuer-id",
        metavar="ID",
        help="issuer id: shown in messages, and the stored issuer with --data-dir "
        "(default: the type)",
    )
    group.add_argument(
        "--data-dir",
        metavar="DIR",
        type=Path,
        help="the server's data directory (default $CERTCTL_DATA_DIR): use the issuer "
        "stored there and record issued/revoked certificates in its ledger",
    )


def _issue_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("certificate")
    group.add_argument(
        "--validity",
        metavar="DURATION",
        type=_duration,
        help="lifetime to ask for: 90d, 8h, 30m (default: the connector's)",
    )
    group.add_argument(
        "--profile", metavar="NAME", default="default", help="certificate profile name"
    )
    group.add_argument(
        "--max-ttl",
        metavar="DURATION",
        type=_duration,
        help="profile MaxTTL: certctl caps the lifetime and refuses a longer certificate",
    )
    group.add_argument(
        "--force", action="store_true", help="replace existing output files (atomically)"
    )


class _ArgumentError(Exception):
    """argparse found bad flags; carries the usage line of the (sub)command."""

    def __init__(self, usage: str, message: str) -> None:
        super().__init__(message)
        self.usage = usage
        self.message = message


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of exiting, so ``--json`` still gets a document."""

    def error(self, message: str) -> NoReturn:
        raise _ArgumentError(self.format_usage(), message)


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=30)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="certctl",
        description=_DESCRIPTION,
        epilog=_MAIN_EPILOG,
        formatter_class=_formatter,
    )
    parser.add_argument("--version", action="version", version=f"certctl {__version__}")
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log to stderr (-vv for debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=_HELP[name],
            description=_HELP[name][0].upper() + _HELP[name][1:] + ".",
            epilog=f"{_EPILOGS[name]}\n\n{_EXIT_SHORT}",
            formatter_class=_formatter,
        )
        _common(p)
        return p

    add("plugins")
    _issuer_options(add("check"))

    issue = add("issue")
    _issuer_options(issue)
    what = issue.add_argument_group("what to certify")
    what.add_argument("--csr", metavar="FILE", type=Path, help="a PKCS#10 CSR (PEM or DER)")
    what.add_argument("--cn", metavar="NAME", help="subject common name (key generated)")
    what.add_argument(
        "--san",
        metavar="NAME",
        action="append",
        default=[],
        help="subject alternative name, repeatable (key generated)",
    )
    what.add_argument(
        "--key-type",
        choices=sorted(KEY_TYPES),
        default="ec-p256",
        help="type of the generated key (default ec-p256)",
    )
    out = issue.add_argument_group("output")
    out.add_argument("--key-out", metavar="FILE", type=Path, help="write the new key here (0600)")
    out.add_argument("--out", metavar="FILE", type=Path, help="write the chain here, not stdout")
    _issue_options(issue)

    renew = add("renew")
    _issuer_options(renew)
    src = renew.add_argument_group("what to renew")
    src.add_argument(
        "--cert", metavar="FILE", type=Path, required=True, help="the certificate to renew"
    )
    src.add_argument("--key", metavar="FILE", type=Path, help="its private key, to reuse")
    src.add_argument("--csr", metavar="FILE", type=Path, help="a CSR for the same names")
    src.add_argument("--new-key", action="store_true", help="generate a new key")
    src.add_argument(
        "--key-type",
        choices=sorted(KEY_TYPES),
        help="type of the new key (default: the old key's type)",
    )
    rout = renew.add_argument_group("output")
    rout.add_argument("--out", metavar="FILE", type=Path, help="write the new chain here")
    rout.add_argument("--key-out", metavar="FILE", type=Path, help="write the new key here")
    rout.add_argument(
        "--in-place", action="store_true", help="replace --cert (and --key with --new-key)"
    )
    _issue_options(renew)

    revoke = add("revoke")
    _issuer_options(revoke)
    which = revoke.add_argument_group("which certificate")
    which.add_argument("--serial", metavar="SERIAL", help="decimal, 0x.. hex or aa:bb:.. hex")
    which.add_argument("--cert", metavar="FILE", type=Path, help="the certificate file")
    revoke.add_argument(
        "--reason",
        metavar="REASON",
        default="unspecified",
        help="RFC 5280 reason name or code (default unspecified)",
    )

    status = add("status")
    _issuer_options(status)
    which = status.add_argument_group("which certificate")
    which.add_argument("--serial", metavar="SERIAL", help="decimal, 0x.. hex or aa:bb:.. hex")
    which.add_argument("--cert", metavar="FILE", type=Path, help="the certificate file")

    chain = add("chain")
    _issuer_options(chain)
    chain.add_argument("--out", metavar="FILE", type=Path, help="write the PEM chain here")
    chain.add_argument("--force", action="store_true", help="replace an existing --out")

    crl = add("crl")
    _issuer_options(crl)
    crl.add_argument("--out", metavar="FILE", type=Path, required=True, help="write the CRL here")
    crl.add_argument("--pem", action="store_true", help="PEM instead of DER")
    crl.add_argument("--force", action="store_true", help="replace an existing --out")

    serve = add("serve")
    serve.add_argument(
        "--config", metavar="FILE", type=Path, help="server settings, *.json or *.toml"
    )
    serve.add_argument(
        "--data-dir", metavar="DIR", type=Path, help="store and ledger (default ./certctl-data)"
    )
    serve.add_argument(
        "--database-url",
        metavar="URL",
        help="postgresql://user@host/db: replicas share one PostgreSQL (default: SQLite in "
        "the data directory; or CERTCTL_DATABASE_URL; keep the password in PGPASSWORD or "
        "~/.pgpass rather than on the command line)",
    )
    serve.add_argument("--host", metavar="ADDR", help="listen address (default 127.0.0.1)")
    serve.add_argument(
        "--port", metavar="PORT", type=int, help="listen port (default 8080; 0: a free one)"
    )
    serve.add_argument(
        "--api-token-file",
        metavar="FILE",
        type=Path,
        help="API bearer token(s), one per line (or CERTCTL_API_TOKENS)",
    )
    return parser


def _configure_logging(verbosity: int, stderr: TextIO) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(stderr)
    handler.setFormatter(logging.Formatter("certctl: %(levelname)s: %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    if verbosity < 2:
        # httpx logs every request at INFO; keep that for -vv.
        logging.getLogger("httpx").setLevel(logging.WARNING)
    if verbosity < 3:
        # httpcore's connection-level chatter only at -vvv.
        logging.getLogger("httpcore").setLevel(logging.WARNING)
    if verbosity < 2:
        # asyncio reports tasks left over at shutdown with their tracebacks: -vv only.
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)


def run(
    command: Callable[[argparse.Namespace], Coroutine[Any, Any, Result] | Result],
    args: argparse.Namespace,
    interrupt: _Interrupt | None = None,
) -> Result:
    """Run one command: a coroutine on a fresh event loop, ``serve`` as it is (it blocks).

    Ctrl-C cancels the command's task (see :class:`_Interrupt`); the cancellation then
    surfaces as KeyboardInterrupt.
    """
    if not inspect.iscoroutinefunction(command):
        outcome = command(args)
        assert isinstance(outcome, Result)
        return outcome
    with asyncio.Runner() as runner:
        loop = runner.get_loop()
        task = loop.create_task(command(args))
        if interrupt is not None:
            interrupt.attach(loop, task)
        try:
            result: Result = loop.run_until_complete(task)
        except asyncio.CancelledError:
            if interrupt is not None and interrupt.fired:
                raise KeyboardInterrupt from None
            raise
        finally:
            if interrupt is not None:
                interrupt.detach()
        return result


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``certctl``; returns the exit code (see ``certctl --help``)."""
    stdout, stderr = sys.stdout, sys.stderr
    parser = build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(arguments)
    except _ArgumentError as exc:
        stderr.write(exc.usage)
        problem = UsageError(exc.message, hint="see 'certctl --help' or 'certctl COMMAND --help'")
        emit_error(problem, json_mode="--json" in arguments, stdout=stdout, stderr=stderr)
        return int(ExitCode.USAGE)
    json_mode = bool(getattr(args, "json", False))
    _configure_logging(int(getattr(args, "verbose", 0) or 0), stderr)
    interrupt = _Interrupt(json_mode, stdout, stderr)
    previous = interrupt.install() if args.command != "serve" else None
    try:
        result = run(COMMANDS[args.command], args, interrupt)
    except KeyboardInterrupt:
        interrupt.report()
        return int(ExitCode.INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - the one place for every failure
        if os.environ.get(DEBUG_ENV):
            traceback.print_exception(exc, file=stderr)
        emit_error(exc, json_mode=json_mode, stdout=stdout, stderr=stderr)
        return int(exit_code_for(exc))
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    emit_result(result, json_mode=json_mode, stdout=stdout, stderr=stderr)
    return int(result.code)


class _Interrupt:
    """Ctrl-C stops a command promptly, even while a connector waits on its CA.

    The first SIGINT cancels the command's task, so cleanup runs (connectors closed,
    temporary files removed) and the command ends with exit code 130; outside the event
    loop it raises KeyboardInterrupt. A connector may wait for an in-flight request when
    closing (the step-ca connector lets it finish, up to ``timeout_seconds``), so after
    :data:`_INTERRUPT_GRACE_S`, or at a second Ctrl-C, certctl exits with 130 regardless.
    Output files are never half-written either way (temporary file, then rename).
    """

    def __init__(self, json_mode: bool, stdout: TextIO, stderr: TextIO) -> None:
        self.json_mode, self.stdout, self.stderr = json_mode, stdout, stderr
        self.lock = threading.Lock()
        self.fired = False
        self.reported = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task[Any] | None = None

    def install(self) -> Any:
        if threading.current_thread() is not threading.main_thread():
            return None
        return signal.signal(signal.SIGINT, self.handle)

    def attach(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
        self.loop, self.task = loop, task

    def detach(self) -> None:
        self.loop, self.task = None, None

    def handle(self, _signum: int, _frame: Any) -> None:
        if self.fired:
            self.force()
        self.fired = True
        timer = threading.Timer(_INTERRUPT_GRACE_S, self.force)
        timer.daemon = True
        timer.start()
        loop, task = self.loop, self.task
        if loop is not None and task is not None and not task.done():
            loop.call_soon_threadsafe(task.cancel)
            return
        raise KeyboardInterrupt

    def report(self) -> None:
        with self.lock:
            if self.reported:
                return
            self.reported = True
        emit_error(
            KeyboardInterrupt(), json_mode=self.json_mode, stdout=self.stdout, stderr=self.stderr
        )
        self.stdout.flush()
        self.stderr.flush()

    def force(self) -> None:
        self.report()
        os._exit(int(ExitCode.INTERRUPTED))


#: How long cleanup may take after Ctrl-C before certctl exits anyway.
_INTERRUPT_GRACE_S = 2.0


def console_main() -> None:
    """Console-script entry point: exit with :func:`main`'s code."""
    sys.exit(main())
