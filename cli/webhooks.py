"""``backbone webhooks``: send the webhook deliveries that are due (for cron, or ``--watch``).

Registered by ``cli/main.py``. The deliverer runs beside the web server, never inside it.
"""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

webhooks_app = typer.Typer(help="Webhooks: send the deliveries that are due.", no_args_is_help=True)


@webhooks_app.command("deliver")
def deliver(
    watch: Annotated[
        float | None,
        typer.Option(
            "--watch",
            min=0.5,
            help="Keep running: deliver again every this many seconds (until interrupted).",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print each run's counts as JSON.")
    ] = False,
) -> None:
    """Send every webhook delivery that is due, in order per webhook; retry failed ones later
    with backoff, and mark them failed after BACKBONE_WEBHOOK_MAX_ATTEMPTS."""
    from agreements.service import notify_expiring
    from cli.database import open_engine
    from core.clock import utcnow
    from core.db import make_session_factory
    from core.keys import load_master_key
    from core.settings import get_settings
    from notifications.delivery import DeliveryConfig, deliver_due

    settings = get_settings()
    config = DeliveryConfig.from_settings(settings)
    master = load_master_key(settings)
    engine = open_engine()
    sessions = make_session_factory(engine)
    try:
        while True:
            with sessions() as session:
                notify_expiring(session, utcnow())
                session.commit()
            report = deliver_due(sessions, utcnow(), master=master, config=config)
            if as_json:
                typer.echo(json.dumps(report.as_dict()))
            else:
                typer.echo(
                    f"{report.attempted} attempted: {report.delivered} delivered, "
                    f"{report.retrying} to retry, {report.failed} failed"
                )
            if watch is None:
                break
            time.sleep(watch)
    except KeyboardInterrupt:
        pass
    finally:
        engine.dispose()
