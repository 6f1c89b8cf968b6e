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

import contextlib
import ctypes
import errno
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from types import FrameType
from typing import Any

log = logging.getLogger("backbone.serve")
_STARTUP_SECONDS = 5.0
_PR_SET_PDEATHSIG = 1


def reuse_port_supported() -> bool:
    return hasattr(socket, "SO_REUSEPORT")


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _listen(host: str, port: int) -> socket.socket:
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


def _die_with(parent: int) -> None:
    """Have the kernel send SIGTERM to this worker when the supervisor dies, even by SIGKILL
    (Linux), so that no orphaned worker keeps serving on the port."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _worker(app: str, host: str, port: int, options: dict[str, Any], parent: int) -> None:
    import uvicorn

    _die_with(parent)

    sock = _listen(host, port)
    config = uvicorn.Config(app, host=host, port=port, **options)
    uvicorn.Server(config).run(sockets=[sock])


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
    ctx = multiprocessing.get_context("spawn")
    stopping = False

    started: dict[int, float] = {}

    def start() -> multiprocessing.process.BaseProcess:
        proc = ctx.Process(
            target=_worker, args=(app, host, port, options, os.getpid()), daemon=False
        )
        proc.start()
        started[id(proc)] = time.monotonic()
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
                if proc.is_alive() or stopping:
                    continue
                if time.monotonic() - started[id(proc)] < _STARTUP_SECONDS:
                    # It could not start (configuration, database): so will the next one.
                    log.error("a worker failed to start (exit status %s)", proc.exitcode)
                    stopping, status = True, 1
                    break
                log.warning("a worker exited (status %s); starting another", proc.exitcode)
                procs[i] = start()
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()  # SIGTERM: uvicorn finishes the requests in flight
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status
