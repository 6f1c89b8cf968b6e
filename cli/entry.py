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
        from cli.submit import main as submit

        try:
            return submit(sys.argv[2:])
        except KeyboardInterrupt:
            sys.exit(130)
        except Exception as exc:
            if os.environ.get("BACKBONE_DEBUG"):
                raise
            from cli.main import error_message

            message, status = error_message(exc)
            print(message, file=sys.stderr)
            sys.exit(status)
    from cli.main import app as full

    return full()


if __name__ == "__main__":
    sys.exit(main())
