"""A worker process of ``backbone serve --workers N``: ``python -m cli.worker PARENT SPEC``.

The first thing a worker does, before it imports anything but the standard library's smallest
modules, is ask the kernel to send it SIGTERM when its supervisor dies (Linux's
``PR_SET_PDEATHSIG``, which holds even when the supervisor is killed with SIGKILL), and then check
that the supervisor is still its parent: if the supervisor died before the request took effect,
the worker exits at once. So no worker outlives its supervisor, however slowly it starts: the
guarantee does not depend on the worker reaching any point in time.

The application is then imported while SIGTERM still has its default action (a worker told to
stop while it loads simply stops), and only then does uvicorn take over the signals, so that a
stop once the worker serves lets the requests in flight finish.
"""

from __future__ import annotations

import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def arm_parent_death_signal(parent: int) -> bool:
    """Have SIGTERM sent to this process when ``parent`` dies; False if it is already gone."""
    if sys.platform.startswith("linux"):
        import contextlib
        import ctypes

        with contextlib.suppress(OSError, AttributeError):  # no prctl in this libc
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    # Checked after arming: a parent that died before the request took effect is seen here.
    return os.getppid() == parent


def main(argv: list[str]) -> None:
    if len(argv) != 3 or not argv[1].isdigit():
        sys.exit("usage: python -m cli.worker PARENT_PID SPEC_JSON")
    if not arm_parent_death_signal(int(argv[1])):
        os._exit(0)

    import json

    spec = json.loads(argv[2])
    serve(spec["app"], spec["host"], int(spec["port"]), spec["options"])


def serve(app: str, host: str, port: int, options: dict[str, object]) -> None:
    import uvicorn

    from cli.serving import listen

    sock = listen(host, port)
    config = uvicorn.Config(app, host=host, port=port, **options)  # type: ignore[arg-type]
    config.load()  # imports the application before uvicorn handles SIGTERM gracefully
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main(sys.argv)
