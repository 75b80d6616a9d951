"""The subcommands. Each takes the parsed arguments and returns a :class:`Result`.

Issuer commands build the issuer exactly as a host does, through
``Registry(PluginHost.discover())``, so profile MaxTTL policy and the check of every
issued certificate (same key as the CSR, NotAfter within the cap) apply here too.
"""

from __future__ import annotations

import argparse
import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from cryptography import x509

from certctl_core.cli._config import IssuerSpec, issuer_spec
from certctl_core.cli._exit import ExitCode, UsageError
from certctl_core.cli._files import (
    KEY_MODE,
    PendingFile,
    check_targets,
    read_certificates,
    read_input,
    write_files,
)
from certctl_core.cli._keys import (
    build_csr,
    generate_key,
    key_type_of,
    load_private_key,
    parse_san,
    private_key_pem,
    same_public_key,
    subject_for,
)
from certctl_core.cli._output import Result, certificate_summary, pem_of
from certctl_core.domain import (
    CertificateRequest,
    IssuedCertificate,
    Profile,
    RevocationReason,
    SubjectAltNames,
    format_serial_hex,
    parse_serial,
    public_key_der,
)
from certctl_core.errors import UnknownConnectorTypeError
from certctl_core.plugins import PluginHost
from certctl_core.registry import Registry

__all__ = ["COMMANDS"]


def spec_of(args: argparse.Namespace) -> IssuerSpec:
    return issuer_spec(
        type_name=args.type, config_path=args.config, issuer_id=args.issuer_id, env=None
    )


@asynccontextmanager
async def open_issuer(spec: IssuerSpec) -> AsyncIterator[Registry]:
    """A registry holding the one issuer ``spec`` describes, closed on exit."""
    host = PluginHost.discover()
    async with Registry(host) as registry:
        try:
            await registry.build(spec.issuer_id, spec.type_name, spec.config)
        except UnknownConnectorTypeError as exc:
            broken = [f for f in host.failures if spec.type_name in f.entry_point]
            if broken:
                exc.hint = f"{exc.hint}; plugin {broken[0].entry_point!r} failed to load: "
                exc.hint += broken[0].reason
            raise
        yield registry


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
            lines.append(f"  {'':<12} {t['description']}")
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
    spec = spec_of(args)
    async with open_issuer(spec) as registry:
        report = await registry.check(spec.issuer_id)
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
    if key_out is not None:
        lines.append(f"  key       {key_out} (mode 0600)")
    if out is not None:
        lines.append(f"  chain     {out} (leaf + {len(issued.chain) - 1} CA certificate(s))")
    return Result(doc, lines, data=None if out is not None else issued.chain_pem)


async def cmd_issue(args: argparse.Namespace) -> Result:
    spec = spec_of(args)
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
    async with open_issuer(spec) as registry:
        issued = await registry.issue(spec.issuer_id, request)
    write_files(_outputs(issued, args.out, args.key_out, key_pem), force=args.force)
    extra = {"key_generated": key_pem is not None, "key_type": args.key_type if key_pem else None}
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
    spec = spec_of(args)
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
    async with open_issuer(spec) as registry:
        issued = await registry.issue(spec.issuer_id, request)
    write_files(_outputs(issued, out, key_out, key_pem), force=force)
    previous = certificate_summary(old)
    extra_lines.insert(0, f"  replaces  serial 0x{previous['serial_hex']}")
    extra_lines.append(f"  key       {'reused' if key_reused else 'new'}")
    extra = {"previous": previous, "key_reused": key_reused}
    return _issued_result(
        spec,
        issued,
        verb="renewed",
        out=out,
        key_out=key_out,
        extra=extra,
        extra_lines=extra_lines,
    )


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
    spec = spec_of(args)
    serial = _serial_of(args)
    reason = RevocationReason.parse(args.reason)
    async with open_issuer(spec) as registry:
        revocation = await registry.revoke(spec.issuer_id, serial, reason)
    doc = {
        "issuer_id": spec.issuer_id,
        "type": spec.type_name,
        "serial_hex": format_serial_hex(revocation.serial),
        "serial_decimal": str(revocation.serial),
        "reason": revocation.reason.rfc_name,
        "reason_code": int(revocation.reason),
        "already_revoked": revocation.already_revoked,
        "revoked_at": revocation.revoked_at.isoformat() if revocation.revoked_at else None,
    }
    state = "was already revoked" if revocation.already_revoked else "revoked"
    lines = [
        f"serial {doc['serial_decimal']} (0x{doc['serial_hex']}) {state} "
        f"through {_issuer_header(spec)}",
        f"  reason    {doc['reason']} ({doc['reason_code']})",
    ]
    if revocation.revoked_at:
        lines.append(f"  at        {doc['revoked_at']}")
    return Result(doc, lines)


async def cmd_status(args: argparse.Namespace) -> Result:
    spec = spec_of(args)
    serial = _serial_of(args)
    async with open_issuer(spec) as registry:
        status = await registry.status(spec.issuer_id, serial)
    doc = {
        "issuer_id": spec.issuer_id,
        "type": spec.type_name,
        "serial_hex": format_serial_hex(serial),
        "serial_decimal": str(serial),
        "state": status.state,
        "revoked_at": status.revoked_at.isoformat() if status.revoked_at else None,
        "reason": status.reason.rfc_name if status.reason is not None else None,
    }
    line = f"serial {serial} (0x{doc['serial_hex']}): {status.state}"
    if status.state == "revoked":
        line += f" at {doc['revoked_at']} ({doc['reason']})"
    return Result(doc, [line])


async def cmd_chain(args: argparse.Namespace) -> Result:
    spec = spec_of(args)
    if args.out is not None:
        check_targets([args.out], force=args.force)
    async with open_issuer(spec) as registry:
        chain = await registry.ca_chain(spec.issuer_id)
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
    spec = spec_of(args)
    check_targets([args.out], force=args.force)
    async with open_issuer(spec) as registry:
        der = await registry.crl(spec.issuer_id)
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


COMMANDS = {
    "plugins": cmd_plugins,
    "check": cmd_check,
    "issue": cmd_issue,
    "renew": cmd_renew,
    "revoke": cmd_revoke,
    "status": cmd_status,
    "chain": cmd_chain,
    "crl": cmd_crl,
}
