"""A background thread that calls one function every so often until it is stopped.

The workers follow changes made by other workers (revocations, agreement statuses) and sign
audit checkpoints this way. A failing call is logged and tried again at the next tick: a
database hiccup must not end the thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("backbone")


class Periodic:
    def __init__(self, name: str, step: Callable[[], object], failure: str) -> None:
        self.name = name
        self._step = step
        self._failure = failure
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, interval: float) -> None:
        """Call ``step`` every ``interval`` seconds; nothing if ``interval`` <= 0 or running."""
        if interval <= 0 or self._thread is not None:
            return

        def run() -> None:
            while not self._stop.wait(interval):
                try:
                    self._step()
                except Exception:
                    log.warning(self._failure, exc_info=True)

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
