"""The phases a release computation goes through, reported to whoever waits for it (a job).

A report is a phase and the fraction of the work done when it starts. Reports are made only
between the computation's database transactions (never while it holds SQLite's write lock), so
that a reporter may write them in a transaction of its own.
"""

from __future__ import annotations

from collections.abc import Callable

READING = "reading"  # deciding the request, reading and decrypting the records in scope
COMPUTING = "computing"  # counting (and, by differential privacy, charging and adding noise)
PROTECTING = "protecting"  # suppression and its audit, jointly with earlier releases
STORING = "storing"  # storing the release, its audit event and its review

Progress = Callable[[str, float], None]
