"""Which process owns something left on disk or in the database, and whether it still runs.

A process is named by host, pid and its start time in clock ticks since boot (field 22 of
``/proc/<pid>/stat``): a pid reused by a later process has another start time, so a token never
names the wrong process. Without ``/proc`` (not Linux) liveness is unknown and callers fall back
to leases.
"""

from __future__ import annotations

import os
import socket
from functools import cache


def start_ticks(pid: int) -> str | None:
    """The start time of process ``pid``, or None if it does not exist (or cannot be read)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count from the last ")".
    fields = stat[stat.rfind(b")") + 2 :].split()
    return fields[19].decode() if len(fields) > 19 else None


def hostname() -> str:
    return socket.gethostname()[:100] or "localhost"


@cache
def _token(pid: int) -> str:
    return f"{hostname()}/{pid}/{start_ticks(pid) or '?'}"


def process_token() -> str:
    """This process as ``host/pid/start`` (recomputed after a fork, since the pid changes)."""
    return _token(os.getpid())


def owner_alive(token: str) -> bool | None:
    """Whether the process named by ``token`` still runs: True, False, or None if unknown here."""
    parts = token.rsplit("/", 2)
    if len(parts) != 3:
        return None
    host, pid, started = parts
    if host != hostname() or started == "?" or not pid.isdigit():
        return None
    return start_ticks(int(pid)) == started
