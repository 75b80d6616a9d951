"""The subcommands. Each takes the parsed arguments and returns a :class:`Result`.

Issuer commands build the issuer exactly as a host does, through
``Registry(PluginHost.discover())``, so profile MaxTTL policy and the check of every
issued certificate (same key as the CSR, NotAfter within the cap) apply here too.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
from cryptography import x509

from certctl_core.domain import (
    CertificateRequest,
    IssuedCertificate,
    Profile,
    RevocationReason,
    Secret,
    SubjectAltNames,
    format_serial_hex,
    parse_serial,
    public_key_der,
)
from certctl_core.errors import UnknownConnectorTypeError
from certctl_core.host import PluginHost, Registry
from certctl_host.cli._config import IssuerSpec, issuer_spec, load_config_file
from certctl_host.cli._exit import ExitCode, UsageError
from certctl_host.cli._files import (
    KEY_MODE,
    PendingFile,
    check_targets,
    read_certificates,
    read_input,
    write_files,
)
from certctl_host.cli._keys import (
    build_csr,
    generate_key,
    key_type_of,
    load_private_key,
    parse_san,
    private_key_pem,
    same_public_key,
    subject_for,
)
from certctl_host.cli._output import Result, certificate_summary, pem_of

if TYPE_CHECKING:
    from certctl_host.cli._ledger import Ledger
    from certctl_host.storage import IssuerRecord

__all__ = ["COMMANDS"]


def spec_of(args: argparse.Namespace) -> IssuerSpec:
    return issuer_spec(
        type_name=args.type, config_path=args.config, issuer_id=args.issuer_id, env=None
    )


@attrs.define
class Session:
    """One built issuer, and the server's ledger when ``--data-dir`` is given."""

    spec: IssuerSpec
    registry: Registry
    ledger: Ledger | None = None

    @property
    def issuer_id(self) -> str:
        return self.spec.issuer_id


def _data_dir(args: argparse.Namespace) -> Path | None:
    if getattr(args, "data_dir", None) is not None:
        return Path(args.data_dir)
    from_env = os.environ.get("CERTCTL_DATA_DIR")
    return Path(from_env) if from_env else None


async def _resolve(args: argparse.Namespace, ledger: Ledger | None, host: PluginHost) -> IssuerSpec:
    """The issuer: stored in the data directory, or from --type/--config/environment."""
    if ledger is None:
        return spec_of(args)
    where = str(ledger.data_dir)
    explicit = args.type is not None or args.config is not None
    if args.issuer_id is None and not explicit:
        raise UsageError(
            "with a data directory, name the stored issuer with --issuer-id",
            hint="GET /api/v1/issuers on the server lists them",
        )
    if args.issuer_id is not None:
        record = await ledger.issuer(args.issuer_id)
        if record is not None:
            if explicit:
                raise UsageError(
                    f"issuer {args.issuer_id!r} is stored in {where}; certctl uses its stored "
                    "settings",
                    hint="drop --type and --config, or choose another --issuer-id",
                )
            _check_stored(record, where, host)
            return IssuerSpec(
                args.issuer_id, record.type_name, record.config, f"the server's store in {where}"
            )
        if not explicit:
            raise UsageError(
                f"no issuer {args.issuer_id!r} is stored in {where}",
                hint=f"create it with PUT /api/v1/issuers/{args.issuer_id} on the server, or "
                "give --type and --config",
            )
    spec = spec_of(args)
    if args.issuer_id is None and await ledger.issuer(spec.issuer_id) is not None:
        # Without --issuer-id the id is the type name: it must not record this other CA's
        # certificates in the ledger of the stored issuer that has that id.
        raise UsageError(
            f"issuer {spec.issuer_id!r} is stored in {where}, and --type/--config without "
            f"--issuer-id would record under that id the certificates of another issuer",
            hint=f"drop --type and --config to use the stored issuer (--issuer-id "
            f"{spec.issuer_id}), or name this one with another --issuer-id",
        )
    return attrs.evolve(spec, source=f"{spec.source}; ledger in {where}")


def _check_stored(record: IssuerRecord, where: str, host: PluginHost) -> None:
    if record.error is not None:
        raise UsageError(
            f"issuer {record.issuer_id!r} stored in {where} cannot be used: {record.error}",
            hint=f"PUT /api/v1/issuers/{record.issuer_id} again on the server",
        )
    connector_type = host.connector_types.get(record.type_name)
    if connector_type is not None and connector_type.runs_in_one_process(record.config):
        # The server builds it; a second instance in this process would share its state.
        raise UsageError(
            f"issuer {record.issuer_id!r} stored in {where} is a {record.type_name} issuer, "
            "which only the server may run: the type is single-process, and a second "
            "process on the same CA state would fork it (serials, counters, ledger)",
            hint=f"use the server's API (POST /api/v1/issuers/{record.issuer_id}/certificates"
            f", .../revocations), or stop the server and use --type {record.type_name} "
            "--config without --data-dir",
        )


@asynccontextmanager
async def open_issuer(args: argparse.Namespace) -> AsyncIterator[Session]:
    """Build the issuer the arguments name, in a registry closed on exit."""
    data_dir = _data_dir(args)
    ledger: Ledger | None = None
    if data_dir is not None:
        from certctl_host.cli._ledger import open_ledger  # storage only when asked for

        ledger = await open_ledger(data_dir)
    try:
        host = PluginHost.discover()
        spec = await _resolve(args, ledger, host)
        async with Registry(host) as registry:
            try:
                await registry.build(spec.issuer_id, spec.type_name, spec.config)
            except UnknownConnectorTypeError as exc:
                broken = [f for f in host.failures if spec.type_name in f.entry_point]
                if broken:
                    exc.hint = f"{exc.hint}; plugin {broken[0].entry_point!r} failed to load: "
                    exc.hint += broken[0].reason
                raise
            yield Session(spec, registry, ledger)
    finally:
        if ledger is not None:
            await ledger.aclose()


def _issuer_header(spec: IssuerSpec) -> str:
    return f"issuer {spec.issuer_id!r} (type {spec.type_name}, settings from {spec.source})"


# -- plugins ----------------------------------------------------------------------------


async def cmd_plugins(args: argparse.Namespace) -> Result:
    host = PluginHost.discover()
    types: list[dict[str, Any]] = []
    for name in sorted(host.connector_types):
        ctype = host.connector_types[name]
        plugin = host.plugin_of(name)
        types.append(
            {
                "type": name,
                "version": ctype.version,
                "description": ctype.description,
                "capabilities": list(ctype.capabilities.names()),
                "plugin": plugin,
                "distribution": host.distributions.get(plugin or ""),
            }
        )
    failures = [
        {"entry_point": f.entry_point, "distribution": f.distribution, "reason": f.reason}
        for f in host.failures
    ]
    lines = [f"connector types ({len(types)}):"]
    for t in types:
        caps = ", ".join(t["capabilities"]) or "none"
        lines.append(f"  {t['type']:<12} {t['version'] or '?':<8} capabilities: {caps}")
        lines.append(f"  {'':<12} plugin {t['plugin']} ({t['distribution'] or 'no distribution'})")
        if t["description"]:
            for part in textwrap.wrap(t["description"], 72):
                lines.append(f"  {'':<12} {part}")
    if failures:
        lines.append(f"broken plugins ({len(failures)}):")
        for f in failures:
            lines.append(f"  {f['entry_point']} ({f['distribution'] or 'unknown distribution'})")
            lines.append(f"      {f['reason']}")
    if host.blocked:
        lines.append(f"blocked by CERTCTL_DISABLE_PLUGINS: {', '.join(host.blocked)}")
    return Result(
        {"types": types, "failures": failures, "blocked": list(host.blocked)},
        lines,
    )


# -- check ------------------------------------------------------------------------------


async def cmd_check(args: argparse.Namespace) -> Result:
    async with open_issuer(args) as session:
        spec = session.spec
        report = await session.registry.check(spec.issuer_id)
    lines = [_issuer_header(spec)]
    for check in report.checks:
        mark = {True: " ok ", False: "FAIL", None: " -- "}[check.ok]
        lines.append(f"  [{mark}] {check.name}: {check.detail}")
    lines.append("all checks passed" if report.ok else "some checks FAILED")
    return Result(
        {"issuer_id": spec.issuer_id, "type": spec.type_name, **report.as_dict()},
        lines,
        code=ExitCode.OK if report.ok else ExitCode.CHECK_FAILED,
    )


# -- issue and renew --------------------------------------------------------------------


def _profile(args: argparse.Namespace) -> Profile:
    return Profile(name=args.profile, max_ttl=args.max_ttl)


def _outputs(
    issued: IssuedCertificate, out: Path | None, key_out: Path | None, key_pem: bytes | None
) -> list[PendingFile]:
    files: list[PendingFile] = []
    if key_out is not None and key_pem is not None:
        files.append(PendingFile(key_out, key_pem, KEY_MODE))
    if out is not None:
        files.append(PendingFile(out, issued.chain_pem.encode("ascii")))
    return files


def _issued_result(
    spec: IssuerSpec,
    issued: IssuedCertificate,
    *,
    verb: str,
    out: Path | None,
    key_out: Path | None,
    extra: dict[str, Any],
    extra_lines: list[str],
) -> Result:
    summary = certificate_summary(issued.certificate)
    doc = {
        "issuer_id": spec.issuer_id,
        "type": spec.type_name,
        "certificate": summary,
        "chain": [certificate_summary(c) for c in issued.chain[1:]],
        "files": {
            "certificate": str(out) if out else None,
            "key": str(key_out) if key_out else None,
        },
        "certificate_pem": issued.pem,
        "chain_pem": issued.chain_pem,
        **extra,
    }
    lines = [
        f"{verb} through {_issuer_header(spec)}",
        f"  serial    {summary['serial_decimal']} (0x{summary['serial_hex']})",
        f"  subject   {summary['subject'] or '(empty)'}",
        f"  SANs      {', '.join(summary['sans']) or '(none)'}",
        f"  valid     {summary['not_before']} .. {summary['not_after']}",
        f"  issuer    {summary['issuer']}",
        *extra_lines,
    ]
    ledger = extra.get("ledger")
    if ledger:
        lines.append(f"  ledger    recorded in {ledger['data_dir']}")
    if key_out is not None:
        lines.append(f"  key       {key_out} (mode 0600)")
    if out is not None:
        lines.append(f"  chain     {out} (leaf + {len(issued.chain) - 1} CA certificate(s))")
    return Result(doc, lines, data=None if out is not None else issued.chain_pem)


async def cmd_issue(args: argparse.Namespace) -> Result:
    key_pem: bytes | None = None
    if args.csr is not None:
        if args.cn or args.san or args.key_out:
            raise UsageError(
                "--csr cannot be combined with --cn, --san or --key-out",
                hint="the CSR already names the subject and its key stays with you",
            )
        csr_bytes = read_input(args.csr, "CSR file")
        request = CertificateRequest.from_pem(
            csr_bytes, profile=_profile(args), validity=args.validity
        )
        check_targets([p for p in (args.out,) if p], force=args.force)
    else:
        if not args.cn and not args.san:
            raise UsageError(
                "say what to certify: --csr FILE, or --cn NAME and/or --san NAME",
                hint="e.g. certctl issue --type stepca --cn app.example.com "
                "--key-out app.key --out app.pem",
            )
        if args.key_out is None:
            raise UsageError(
                "--key-out is required when certctl generates the key",
                hint="the new private key is written there with mode 0600",
            )
        sans = [parse_san(s) for s in args.san] if args.san else [parse_san(args.cn)]
        subject = subject_for(args.cn)
        check_targets([p for p in (args.key_out, args.out) if p], force=args.force)
        key = generate_key(args.key_type)
        key_pem = private_key_pem(key)
        csr = build_csr(key, subject=subject, sans=sans)
        request = CertificateRequest.from_csr(csr, profile=_profile(args), validity=args.validity)
    async with open_issuer(args) as session:
        spec = session.spec
        issued = await session.registry.issue(spec.issuer_id, request)
        extra = await _record_issued(session, issued)
    write_files(_outputs(issued, args.out, args.key_out, key_pem), force=args.force)
    extra |= {"key_generated": key_pem is not None, "key_type": args.key_type if key_pem else None}
    return _issued_result(
        spec, issued, verb="issued", out=args.out, key_out=args.key_out, extra=extra, extra_lines=[]
    )


def _san_names(cert: x509.Certificate) -> list[x509.GeneralName]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(ext.value)


async def cmd_renew(args: argparse.Namespace) -> Result:
    certs = read_certificates(args.cert)
    old = certs[0]
    sources = [bool(args.key), bool(args.csr), bool(args.new_key)]
    if args.new_key and args.csr:
        raise UsageError("--new-key and --csr exclude each other")
    if args.key and args.csr:
        raise UsageError("give --key (reuse that key) or --csr (a CSR you made), not both")
    if not any(sources):
        raise UsageError(
            "say which key the renewed certificate gets",
            hint="--key FILE reuses the current key, --new-key generates one, "
            "--csr FILE uses a CSR you made",
        )
    if args.out is None and not args.in_place:
        raise UsageError(
            "say where the renewed certificate goes: --out FILE, or --in-place to "
            "replace --cert (and, with --new-key, --key)"
        )
    if args.out is not None and args.in_place:
        raise UsageError("--out and --in-place exclude each other")
    out: Path = args.cert if args.in_place else args.out
    key_out: Path | None = None
    key_pem: bytes | None = None
    if args.new_key:
        key_out = args.key_out or (args.key if args.in_place else None)
        if key_out is None:
            raise UsageError(
                "--new-key needs --key-out FILE (or --in-place with --key FILE to replace it)"
            )
    elif args.key_out is not None:
        raise UsageError("--key-out only makes sense with --new-key")

    targets = [p for p in (key_out, out) if p is not None]
    in_place_targets = {args.cert.resolve()} | ({args.key.resolve()} if args.key else set())
    check_targets(
        [p for p in targets if p.resolve() not in in_place_targets or not args.in_place],
        force=args.force,
    )
    force = args.force or args.in_place

    extra_lines: list[str] = []
    if args.csr is not None:
        request = CertificateRequest.from_pem(
            read_input(args.csr, "CSR file"), profile=_profile(args), validity=args.validity
        )
        if request.csr.subject != old.subject or not request.sans.same_as(SubjectAltNames.of(old)):
            raise UsageError(
                "the CSR names another subject or other SANs than the certificate",
                hint="renew reissues the same names; use 'certctl issue --csr' for new names",
            )
        key_reused = same_public_key_of_csr(request, old)
    else:
        if args.new_key:
            key_type = args.key_type or key_type_of(old.public_key()) or "ec-p256"
            key = generate_key(key_type)
            key_pem = private_key_pem(key)
            key_reused = False
            extra_lines.append(f"  new key   {key_type}")
        else:
            key = load_private_key(read_input(args.key, "private key"), str(args.key))
            if not same_public_key(key, old):
                raise UsageError(
                    f"the key {str(args.key)!r} does not belong to the certificate "
                    f"{str(args.cert)!r}",
                    hint="give the key the certificate was issued for, or use --new-key",
                )
            key_reused = True
        csr = build_csr(key, subject=old.subject, sans=_san_names(old))
        request = CertificateRequest.from_csr(csr, profile=_profile(args), validity=args.validity)
    # Name the certificate being replaced (an ACME CA with ARI gets it as ``replaces``).
    request = attrs.evolve(request, replaces=old)
    async with open_issuer(args) as session:
        spec = session.spec
        issued = await session.registry.issue(spec.issuer_id, request)
        extra = await _record_issued(session, issued)
    write_files(_outputs(issued, out, key_out, key_pem), force=force)
    previous = certificate_summary(old)
    extra_lines.insert(0, f"  replaces  serial 0x{previous['serial_hex']}")
    extra_lines.append(f"  key       {'reused' if key_reused else 'new'}")
    extra |= {"previous": previous, "key_reused": key_reused}
    return _issued_result(
        spec,
        issued,
        verb="renewed",
        out=out,
        key_out=key_out,
        extra=extra,
        extra_lines=extra_lines,
    )


async def _record_issued(session: Session, issued: IssuedCertificate) -> dict[str, Any]:
    """Record in the server's ledger (with --data-dir) before any file is written."""
    if session.ledger is None:
        return {"ledger": None}
    await session.ledger.record_issued(session.issuer_id, issued.certificate)
    return {"ledger": {"recorded": True, **session.ledger.describe()}}


def same_public_key_of_csr(request: CertificateRequest, cert: x509.Certificate) -> bool:
    return request.public_key_der() == public_key_der(cert.public_key())


# -- revoke, status, chain, crl ---------------------------------------------------------


def _serial_of(args: argparse.Namespace) -> int:
    if (args.serial is None) == (args.cert is None):
        raise UsageError("give exactly one of --serial and --cert")
    if args.serial is not None:
        return parse_serial(args.serial)
    return read_certificates(args.cert)[0].serial_number


async def cmd_revoke(args: argparse.Namespace) -> Result:
    serial = _serial_of(args)
    reason = RevocationReason.parse(args.reason)
    if reason is RevocationReason.REMOVE_FROM_CRL:
        raise UsageError(
            "reason removeFromCRL (8) is only for delta CRLs (RFC 5280 §5.3.1); a "
            "certificate cannot be revoked with it",
            hint="use another reason, e.g. unspecified, keyCompromise or superseded",
        )
    recorded: bool | None = None
    async with open_issuer(args) as session:
        spec = session.spec
        revocation = await session.registry.revoke(spec.issuer_id, serial, reason)
        if session.ledger is not None:
            recorded = await session.ledger.record_revocation(spec.issuer_id, revocation)
    doc = {
        "issuer_id": spec.issuer_id,
        "type": spec.type_name,
        "serial_hex": format_serial_hex(revocation.serial),
        "serial_decimal": str(revocation.serial),
        "reason": revocation.reason.rfc_name,
        "reason_code": int(revocation.reason),
        "already_revoked": revocation.already_revoked,
        "revoked_at": revocation.revoked_at.isoformat() if revocation.revoked_at else None,
        "ledger": None if recorded is None else {"recorded": True, "new_entry": recorded},
    }
    state = "was already revoked" if revocation.already_revoked else "revoked"
    lines = [
        f"serial {doc['serial_decimal']} (0x{doc['serial_hex']}) {state} "
        f"through {_issuer_header(spec)}",
        f"  reason    {doc['reason']} ({doc['reason_code']})",
    ]
    if revocation.revoked_at:
        lines.append(f"  at        {doc['revoked_at']}")
    if recorded is not None:
        lines.append("  ledger    recorded" if recorded else "  ledger    already recorded")
    return Result(doc, lines)


async def cmd_status(args: argparse.Namespace) -> Result:
    serial = _serial_of(args)
    async with open_issuer(args) as session:
        spec = session.spec
        async with session.registry.lease(spec.issuer_id) as connector:
            own = connector.capabilities.status
        if own or session.ledger is None:
            status = await session.registry.status(spec.issuer_id, serial)
            source = "connector"
        else:
            status = await session.ledger.status(spec.issuer_id, serial)
            source = "ledger"
    doc = {
        "issuer_id": spec.issuer_id,
        "type": spec.type_name,
        "serial_hex": format_serial_hex(serial),
        "serial_decimal": str(serial),
        "state": status.state,
        "revoked_at": status.revoked_at.isoformat() if status.revoked_at else None,
        "reason": status.reason.rfc_name if status.reason is not None else None,
        "source": source,
    }
    line = f"serial {serial} (0x{doc['serial_hex']}): {status.state}"
    if status.state == "revoked":
        line += f" at {doc['revoked_at']} ({doc['reason']})"
    if source == "ledger":
        line += " (from the server's ledger)"
    return Result(doc, [line])


async def cmd_chain(args: argparse.Namespace) -> Result:
    if args.out is not None:
        check_targets([args.out], force=args.force)
    async with open_issuer(args) as session:
        spec = session.spec
        chain = await session.registry.ca_chain(spec.issuer_id)
    pem = "".join(pem_of(c) for c in chain)
    if args.out is not None:
        write_files([PendingFile(args.out, pem.encode("ascii"))], force=args.force)
    summaries = [certificate_summary(c) for c in chain]
    lines = [f"CA chain of {_issuer_header(spec)} (intermediates first, root last):"]
    for s in summaries:
        lines.append(f"  {s['subject']}  (until {s['not_after']}, sha256 {s['sha256']})")
    if args.out is not None:
        lines.append(f"  written to {args.out}")
    doc = {
        "issuer_id": spec.issuer_id,
        "type": spec.type_name,
        "chain": summaries,
        "chain_pem": pem,
        "file": str(args.out) if args.out else None,
    }
    return Result(doc, lines, data=None if args.out is not None else pem)


async def cmd_crl(args: argparse.Namespace) -> Result:
    check_targets([args.out], force=args.force)
    async with open_issuer(args) as session:
        spec = session.spec
        der = await session.registry.crl(spec.issuer_id)
    data = der
    if args.pem:
        body = base64.encodebytes(der).decode("ascii").replace("\n", "")
        wrapped = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
        data = f"-----BEGIN X509 CRL-----\n{wrapped}\n-----END X509 CRL-----\n".encode("ascii")
    write_files([PendingFile(args.out, data)], force=args.force)
    crl = x509.load_der_x509_crl(der)
    doc = {
        "issuer_id": spec.issuer_id,
        "type": spec.type_name,
        "file": str(args.out),
        "entries": len(crl),
        "this_update": crl.last_update_utc.isoformat(),
        "next_update": crl.next_update_utc.isoformat() if crl.next_update_utc else None,
        "bytes": len(der),
    }
    lines = [
        f"CRL of {_issuer_header(spec)} written to {args.out}",
        f"  {len(crl)} revoked, this update {doc['this_update']}, next {doc['next_update']}",
    ]
    return Result(doc, lines)


def cmd_serve(args: argparse.Namespace) -> Result:
    """Run the reference server until SIGINT/SIGTERM (blocking; not a coroutine)."""
    try:  # the web stack only for this command, and only with the server extra
        from certctl_host.server import ServerSettings, serve
    except ModuleNotFoundError as exc:
        raise UsageError(
            f"certctl serve needs the server extra; the module {exc.name!r} is not installed",
            hint="pip install 'certctl-connectors[server]'",
        ) from None

    raw: dict[str, Any] = dict(load_config_file(args.config)) if args.config else {}
    if args.data_dir is not None:
        raw["data_dir"] = str(args.data_dir)
    if getattr(args, "database_url", None) is not None:
        raw["database_url"] = Secret(args.database_url)
    if args.host is not None:
        raw["host"] = args.host
    if args.port is not None:
        raw["port"] = args.port
    if args.api_token_file is not None:
        text = read_input(args.api_token_file, "API token file").decode("utf-8", "replace")
        raw["api_tokens"] = [Secret(line.strip()) for line in text.splitlines() if line.strip()]
    settings = ServerSettings.from_mapping(raw, os.environ)
    json_mode = bool(getattr(args, "json", False))

    def ready(url: str) -> None:
        if json_mode:
            print(json.dumps({"ok": True, "listening": url, **_endpoints(url)}), flush=True)
        else:
            where = (
                f"data in {settings.data_dir}"
                if settings.database_url is None
                else f"replica {settings.replica_id} on PostgreSQL"
            )
            print(f"certctl: serving {url} ({where})", flush=True)
            for name, where in _endpoints(url).items():
                print(f"  {name:<5} {where}", flush=True)

    # uvicorn handles SIGINT/SIGTERM itself (graceful shutdown), then restores the
    # previous handlers and raises the signal again: ours turn it into a clean stop.
    previous = {sig: signal.signal(sig, _stop_server) for sig in (signal.SIGINT, signal.SIGTERM)}
    how = "stopped"
    try:
        serve(settings, ready=ready)
    except _ServerStop as stop:
        how = f"stopped ({stop})"
    except SystemExit as stop:
        # serve() raises SystemExit only when uvicorn could not start listening (it has
        # logged why); start-up errors of the server itself arrive as certctl errors.
        if stop.code in (0, None):
            raise
        raise UsageError(
            f"the server could not listen on {settings.host}:{settings.port}",
            hint="is the port in use? choose another with --port (0 picks a free one)",
        ) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return Result({}, [f"certctl: server {how}"], silent_json=True)


class _ServerStop(Exception):
    """SIGINT or SIGTERM reached ``certctl serve``: stop, successfully."""


def _stop_server(signum: int, _frame: object) -> None:
    raise _ServerStop(signal.Signals(signum).name)


def _endpoints(url: str) -> dict[str, str]:
    return {
        "api": f"{url}/api/v1/issuers",
        "ocsp": f"{url}/.well-known/pki/ocsp/<issuer>",
        "crl": f"{url}/.well-known/pki/crl/<issuer>",
    }


COMMANDS: dict[str, Any] = {
    "plugins": cmd_plugins,
    "check": cmd_check,
    "issue": cmd_issue,
    "renew": cmd_renew,
    "revoke": cmd_revoke,
    "status": cmd_status,
    "chain": cmd_chain,
    "crl": cmd_crl,
    "serve": cmd_serve,
}
