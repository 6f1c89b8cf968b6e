"""``backbone audit``: verify exports and proofs offline; make checkpoints and exports.

``verify`` and ``verify-proof`` need no database and no service: only files and the public key.
``checkpoint`` (for cron), ``export`` and ``public-key`` run where the service's database and
master key are.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from cli.database import command_context, unit_of_work

audit_app = typer.Typer(
    help="The tamper-evident audit log: verify exports and proofs, make checkpoints.",
    no_args_is_help=True,
)

EXIT_FAILED = 1  # verification failed: the export or proof is not what the log signed
EXIT_USAGE = 2  # the inputs could not be read


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"cannot read {path}: {exc}")


def _key(path: Path) -> Any:
    from audit.note import NoteError, VerifierKey

    try:
        return VerifierKey.parse(_read(path))
    except NoteError as exc:
        _fail(f"{path}: {exc}")


def _checkpoints(paths: list[Path], key: Any) -> list[Any]:
    from audit.note import NoteError, read_checkpoint

    out = []
    for path in paths:
        try:
            out.append(read_checkpoint(_read(path), key))
        except NoteError as exc:
            # A checkpoint that does not verify under the log's key is itself evidence.
            _fail(f"{path}: {exc}", EXIT_FAILED)
    return out


@audit_app.command()
def verify(
    export: Annotated[Path, typer.Argument(help="an export (NDJSON or CSV) from /v1/audit/export")],
    checkpoint: Annotated[
        list[Path],
        typer.Option(help="a signed checkpoint (note or JSON); repeat to give older ones too"),
    ],
    public_key: Annotated[Path, typer.Option(help="the log's public key (vkey, PEM or JSON)")],
    format: Annotated[str | None, typer.Option(help="ndjson or csv (default: detected)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Verify an export offline: recompute the tree, check the signed roots, name the first bad
    entry. Exit status 0: verified; 1: not what the log signed; 2: unreadable input."""
    from audit.verify import verify_export

    if format not in (None, "ndjson", "csv"):
        _fail("--format must be ndjson or csv")
    if not export.is_file():
        _fail(f"{export}: no such file")
    key = _key(public_key)
    cps = _checkpoints(checkpoint, key)
    report = verify_export(export, cps, fmt=format)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    else:
        rate = report.entries / report.seconds if report.seconds else 0.0
        typer.echo(
            f"{export}: {report.entries} entries ({report.format}) checked in "
            f"{report.seconds:.2f} s ({rate:,.0f} entries/s)"
        )
        for c in report.checkpoints:
            typer.echo(f"  checkpoint of size {c.size} ({c.time or 'no time'}): {c.status}")
        if report.first_bad is None:
            typer.secho("OK: the export is exactly the log the checkpoints signed.", fg="green")
        else:
            bad = report.first_bad
            typer.secho(
                f"FAILED: first bad entry at index {bad.position} ({bad.kind}): {bad.message}",
                fg="red",
            )
            for other in report.findings[1:]:
                typer.echo(f"  also at {other.position} ({other.kind}): {other.message}")
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)


@audit_app.command("verify-proof")
def verify_proof(
    proof: Annotated[
        Path, typer.Argument(help="JSON from /v1/audit/proofs/inclusion or /consistency")
    ],
    public_key: Annotated[Path, typer.Option(help="the log's public key (vkey, PEM or JSON)")],
    checkpoint: Annotated[
        list[Path] | None, typer.Option(help="a checkpoint you saved earlier; repeatable")
    ] = None,
) -> None:
    """Check a receipt's inclusion proof, or a consistency proof, offline."""
    from audit.verify import verify_proof as check

    key = _key(public_key)
    saved = _checkpoints(checkpoint or [], key)
    try:
        doc = json.loads(_read(proof))
    except json.JSONDecodeError:
        _fail(f"{proof}: not JSON")
    if not isinstance(doc, dict):
        _fail(f"{proof}: not a proof document")
    ok, message = check(doc, key, saved)
    typer.secho(("OK: " if ok else "FAILED: ") + message, fg="green" if ok else "red")
    if not ok:
        raise typer.Exit(EXIT_FAILED)


# --- commands that need the service's database and master key -------------------------------


def _signer() -> Any:
    from audit.note import origin_for, signer_for
    from core.keys import MasterKeyError, load_master_key
    from core.settings import get_settings

    settings = get_settings()
    try:
        master = load_master_key(settings)
    except MasterKeyError as exc:
        _fail(str(exc))
    return signer_for(master, origin_for(settings.issuer))


@audit_app.command()
def checkpoint() -> None:
    """Sign the current tree head if the log has grown (run from cron); print the checkpoint."""
    from audit import checkpoints
    from audit.errors import AuditIntegrityError
    from core.clock import utcnow

    signer = _signer()
    try:
        with unit_of_work() as session:
            row = checkpoints.create(session, signer, utcnow())
    except AuditIntegrityError as exc:
        _fail(f"refusing to sign: {exc.detail}", EXIT_FAILED)
    if row is None:
        _fail("the audit log is empty: nothing to sign")
    typer.echo(row.note, nl=False)


@audit_app.command("self-check")
def self_check(
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Re-hash the whole stored log from its rows and check the tree head and every stored
    checkpoint against it. Exit status 0: intact; 1: the database was altered."""
    from audit.integrity import MAX_FINDINGS
    from audit.integrity import self_check as run

    with unit_of_work() as session:
        report = run(session)
        session.rollback()
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    elif report.ok:
        typer.secho(
            f"OK: {report.size} events re-hashed from their rows in {report.seconds:.2f} s; the "
            f"tree head and {report.checkpoints} checkpoint(s) match.",
            fg="green",
        )
    else:
        typer.secho(
            f"FAILED: {len(report.problems)} problem(s) in {report.size} events; first: "
            f"{report.problems[0]}",
            fg="red",
        )
        for problem in report.problems[1:MAX_FINDINGS]:
            typer.echo(f"  also: {problem}")
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)


@audit_app.command("export")
def export_log(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="default: stdout")] = None,
    format: Annotated[str, typer.Option(help="ndjson or csv")] = "ndjson",
    tree_size: Annotated[int | None, typer.Option(help="default: a checkpoint of the head")] = None,
    checkpoint_out: Annotated[
        Path | None, typer.Option(help="also write the checkpoint the export matches")
    ] = None,
) -> None:
    """Export the log from the database (audited like an API export)."""
    from audit import checkpoints, export
    from audit.queries import EventFilter
    from cli.database import open_engine
    from core.db import make_session_factory
    from core.errors import DomainError

    signer = _signer()
    ctx = command_context()
    try:
        with unit_of_work() as session:
            plan = export.operator_plan(
                session, ctx, signer, fmt=format, tree_size=tree_size, filters=EventFilter()
            )
            cp = checkpoints.at_size(session, plan.tree_size)
            note = cp.note if cp is not None else None
    except DomainError as exc:
        _fail(exc.detail)
    engine = open_engine()
    try:
        sink = output.open("wb") if output else sys.stdout.buffer
        try:
            for chunk in export.stream(make_session_factory(engine), plan):
                sink.write(chunk)
        finally:
            if output:
                sink.close()
    finally:
        engine.dispose()
    if checkpoint_out is not None:
        if note is None:
            _fail(f"no checkpoint has tree size {plan.tree_size}")
        checkpoint_out.write_text(note or "", encoding="utf-8")
    typer.echo(f"exported {plan.tree_size} events", err=True)


@audit_app.command("public-key")
def public_key(
    format: Annotated[str, typer.Option(help="vkey or pem")] = "vkey",
) -> None:
    """Print the log's public key, for auditors and partners to pin."""
    key = _signer().verifier
    if format == "pem":
        typer.echo(key.pem(), nl=False)
    elif format == "vkey":
        typer.echo(key.vkey())
    else:
        _fail("--format must be vkey or pem")
