"""``backbone releases``: releases held for review by their data providers.

Registered by ``cli/main.py`` as ``backbone releases``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated

import typer

releases_app = typer.Typer(
    help="Releases held for the data providers' review.", no_args_is_help=True
)


@releases_app.command("publish-due")
def publish_due(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be published; change nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    at: Annotated[
        datetime | None,
        typer.Option(help="Decide as of this time (ISO 8601, UTC) instead of now; for drills."),
    ] = None,
) -> None:
    """Publish every held release whose review allows it now: approved by every reviewer, or
    past its review window under an agreement that says publish (run it from cron). Each
    publication is audited; a release held past its window under ``hold`` stays held."""
    from datetime import UTC

    from aggregation import review
    from cli.database import open_engine
    from core.clock import utcnow
    from core.context import RequestContext
    from core.db import make_session_factory
    from core.ids import new_id

    now = utcnow() if at is None else (at if at.tzinfo else at.replace(tzinfo=UTC))
    engine = open_engine()
    try:
        with make_session_factory(engine)() as session:
            report = review.publish_due(session, RequestContext(new_id("cli"), now, None))
            if dry_run:
                session.rollback()
            else:
                session.commit()
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps([item.as_dict() for item in report], indent=2))
        return
    if dry_run:
        typer.echo("dry run: nothing was changed")
    published = [item for item in report if item.state == review.PUBLISHED]
    for item in report:
        verb = {
            review.PUBLISHED: f"published ({item.by})",
            review.PENDING: "still held",
        }.get(item.state, item.state)
        typer.echo(f"release {item.release} of {item.indicator}: {verb}")
    typer.echo(f"{len(published)} of {len(report)} held release(s) published")
