"""``backbone records``: retention (crypto-shredding) and master-key re-wrap of the record vault.

Registered by ``cli/main.py`` as ``backbone records`` (and ``purge`` also as ``backbone purge``).
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

records_app = typer.Typer(
    help="Record vault: retention and crypto-shredding, master key re-wrap.", no_args_is_help=True
)


def _settings() -> Any:
    from core.settings import get_settings

    return get_settings()


def _print_report(report: Any, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
        return
    if report.skipped:
        typer.echo("another purge is running; nothing was done")
    elif not report.purged_anything:
        typer.echo("nothing to purge")
    for item in report.withdrawals:
        typer.echo(
            f"submission {item['submission']}: withdrawal took effect {item['effective_at']}"
        )
    for item in report.agreements:
        typer.echo(
            f"agreement {item['agreement']} ({item['reason']} {item['ended_at']}): "
            f"{len(item['data_keys'])} data key(s) destroyed, {item['submissions']} "
            f"submission(s), {item['rows']} row(s) shredded"
        )
    for item in report.submissions:
        typer.echo(
            f"submission {item['submission']} ({item['reason']}): {item['rows']} row(s) shredded"
        )
    if report.scrubbed is False:
        typer.secho(
            "freed pages could not all be scrubbed yet (readers were active); run purge again",
            fg=typer.colors.YELLOW,
            err=True,
        )
    if report.scratch_removed:
        typer.echo(f"removed {report.scratch_removed} upload directory(ies) of stopped processes")
    if report.uploads_removed:
        typer.echo(f"removed the bytes of {report.uploads_removed} expired resumable upload(s)")


def purge(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be purged; change nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    at: Annotated[
        datetime | None,
        typer.Option(help="Purge as of this time (ISO 8601, UTC) instead of now; for drills."),
    ] = None,
) -> None:
    """Crypto-shred the data that retention says must go: agreements expired or terminated, and
    submissions withdrawn or replaced, once their grace period has passed. Scheduled withdrawals
    whose notice has run out are recorded as withdrawn first."""
    from datetime import UTC

    from cli.database import open_engine
    from core.clock import utcnow
    from core.context import RequestContext
    from core.db import make_session_factory
    from core.ids import new_id
    from records import retention

    settings = _settings()
    now = utcnow() if at is None else (at if at.tzinfo else at.replace(tzinfo=UTC))
    engine = open_engine()
    sessions = make_session_factory(engine)
    try:
        if dry_run:
            with sessions() as session:
                report = retention.purge(session, RequestContext(new_id("purge"), now, None), now)
                session.rollback()
        else:
            report = retention.purge_and_scrub(
                sessions, engine, now, settings.data_dir, upload_dir=settings.upload_dir
            )
    finally:
        engine.dispose()
    if dry_run and not as_json:
        typer.echo("dry run: nothing was changed")
    _print_report(report, as_json)


def _read_key(path: Path) -> bytes:
    text = path.read_text().strip()
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@records_app.command("rewrap")
def rewrap(
    old_key_file: Annotated[
        Path, typer.Option(help="File holding the previous master key (base64url, 32 bytes).")
    ],
) -> None:
    """Re-wrap every live data key under the configured master key (after a master key change).

    Segments are not touched. Afterwards, destroy the old key: every copy of the database made
    before the re-wrap becomes unreadable with it, including data purged since.
    """
    from cli.database import open_engine
    from core.clock import utcnow
    from core.context import RequestContext
    from core.db import make_session_factory
    from core.ids import new_id
    from core.keys import MasterKey, MasterKeyError, load_master_key
    from records import retention

    settings = _settings()
    try:
        old = MasterKey(_read_key(old_key_file))
        new = load_master_key(settings)
    except (MasterKeyError, ValueError, OSError) as exc:
        typer.secho(f"cannot read the keys: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    if old.raw == new.raw:
        typer.secho("the old key is the configured key: nothing to do", err=True)
        raise typer.Exit(2)
    engine = open_engine()
    try:
        with make_session_factory(engine)() as session:
            now = utcnow()
            count = retention.rewrap(session, RequestContext(new_id("cli"), now, None), old, new)
            session.commit()
    finally:
        engine.dispose()
    typer.echo(f"re-wrapped {count} data key(s) under master key {new.fingerprint()}")


records_app.command("purge")(purge)
