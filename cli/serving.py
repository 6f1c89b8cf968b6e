"""Serving with several worker processes, each listening on its own socket (``SO_REUSEPORT``).

uvicorn's multi-worker mode shares one listening socket among its workers: the worker that wakes
first accepts every pending connection, so a few keep-alive clients (a reverse proxy, a
dashboard's backend, a load test) all land on one worker while the others idle. Measured here
with 16 keep-alive connections and 2 workers: one worker served 97% of the requests. With
``SO_REUSEPORT`` each worker has a listening socket of its own and the kernel spreads new
connections across them by a hash of their addresses. Where the option does not exist, uvicorn's
own mode is used.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import MutableMapping
from pathlib import Path
from types import FrameType
from typing import Any

log = logging.getLogger("backbone.serve")
_STARTUP_SECONDS = 5.0


METRICS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def metrics_directory(environ: MutableMapping[str, str]) -> tuple[Path, bool]:
    """The directory where the workers of this server write their metrics (prometheus-client's
    multiprocess mode), set in ``environ`` for them; and whether it was made here (a temporary
    one, to remove when the server stops).

    An operator's ``PROMETHEUS_MULTIPROC_DIR`` is used, emptied of the files of a previous
    run first (counters would otherwise go on from where they stopped, and a dead run's workers
    would be counted forever); give each server a directory of its own."""
    given = environ.get(METRICS_VARIABLE)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        return path, False
    path = Path(tempfile.mkdtemp(prefix="backbone-metrics-"))
    environ[METRICS_VARIABLE] = str(path)
    return path, True


def reuse_port_supported() -> bool:
    return hasattr(socket, "SO_REUSEPORT")


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def _ensure_free(host: str, port: int) -> None:
    """Fail now, as a single server would, if anything else holds the port: sockets bound with
    SO_REUSEPORT by the same user would otherwise share it silently."""
    probe = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
    finally:
        probe.close()


def serve_workers(app: str, host: str, port: int, workers: int, options: dict[str, Any]) -> int:
    """Run ``workers`` uvicorn processes on ``host:port`` until SIGINT or SIGTERM; a worker that
    dies is replaced. Returns the exit status."""
    try:
        _ensure_free(host, port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            print(f"refusing to start: {host}:{port} is already in use", file=sys.stderr)
            return 1
        raise
    stopping = False
    spec = json.dumps({"app": app, "host": host, "port": port, "options": options})
    started: dict[int, float] = {}

    def start() -> subprocess.Popen[bytes]:
        # A fresh interpreter that arms its parent-death signal before it imports anything else
        # (see cli.worker); multiprocessing's spawn would first re-import this command's modules.
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "cli.worker", str(os.getpid()), spec]
        )
        started[proc.pid] = time.monotonic()
        return proc

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    procs = [start() for _ in range(workers)]
    status = 0
    try:
        while not stopping:
            time.sleep(0.2)
            for i, proc in enumerate(procs):
                if proc.poll() is None or stopping:
                    continue
                if time.monotonic() - started[proc.pid] < _STARTUP_SECONDS:
                    # It could not start (configuration, database): so will the next one.
                    log.error("a worker failed to start (exit status %s)", proc.returncode)
                    stopping, status = True, 1
                    break
                log.warning("a worker exited (status %s); starting another", proc.returncode)
                procs[i] = start()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()  # SIGTERM: uvicorn finishes the requests in flight
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status
