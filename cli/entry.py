"""The ``backbone`` executable. ``backbone submit`` runs from cron on partner systems, often
for small files: it starts without importing the operator's commands (SQLAlchemy, the
services), which would take longer than the upload. Every other command is :data:`cli.main.app`.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def main() -> Any:
    if len(sys.argv) > 1 and sys.argv[1] == "submit":
        import typer

        from cli.submit import submit

        app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
        app.command()(submit)
        try:
            return app(prog_name="backbone submit", args=sys.argv[2:])
        except KeyboardInterrupt:
            sys.exit(130)
        except Exception as exc:
            if os.environ.get("BACKBONE_DEBUG"):
                raise
            from cli.main import error_message

            message, status = error_message(exc)
            typer.secho(message, fg=typer.colors.RED, err=True)
            sys.exit(status)
    from cli.main import app as full

    return full()


if __name__ == "__main__":
    sys.exit(main())
