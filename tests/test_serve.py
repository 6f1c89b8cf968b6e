"""``backbone serve --workers N``: one listening socket per worker (SO_REUSEPORT), so that
keep-alive connections spread over the workers; a clean stop on SIGTERM; a clear refusal when
the port is taken."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.serving import reuse_port_supported
from migrations.commands import upgrade
from tests.conftest import FreshDatabase

BACKBONE = Path(sys.executable).parent / "backbone"

pytestmark = [
    pytest.mark.process,
    pytest.mark.skipif(not reuse_port_supported(), reason="needs SO_REUSEPORT"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(url: str, data_dir: Path, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "BACKBONE_DATABASE_URL": url,
        "BACKBONE_DATA_DIR": str(data_dir),
        "BACKBONE_ISSUER": f"http://127.0.0.1:{port}",
        "BACKBONE_LOG_LEVEL": "WARNING",
    }


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's exit status is collected by init, eventually).

    A process that is gone answers at once; the long wait is only a bound on a failure, so that
    a slow, loaded machine does not make a correct server fail the test."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        if state in ("Z", "X"):
            return False
        time.sleep(0.1)
    return True


def _listeners(pids: set[int], port: int) -> set[int]:
    """The processes among ``pids`` that hold a listening socket on ``port``."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    holders = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    holders.add(pid)
        except OSError:
            continue
    return holders


@contextmanager
def _serving(fresh_databases: FreshDatabase, tmp_path: Path) -> Iterator[tuple[Any, int, set[int]]]:
    """``backbone serve --workers 2`` until both workers listen: (process, port, worker pids)."""
    url = fresh_databases.url()
    upgrade(url)
    port = _free_port()
    proc = subprocess.Popen(
        [str(BACKBONE), "serve", "--port", str(port), "--workers", "2"],
        env=_env(url, tmp_path, port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 90
        workers: set[int] = set()
        while len(_listeners(workers, port)) < 2:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.2)
            workers = _children(proc.pid)
        yield proc, port, workers
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


needs_proc = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc")


@needs_proc
def test_each_worker_listens_and_sigterm_stops_them_all(fresh_databases: FreshDatabase, tmp_path):
    with _serving(fresh_databases, tmp_path) as (proc, port, workers):
        # A worker listens before its application has started; connections wait in its queue.
        for _ in range(10):
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=60).status_code == 200
        assert _listeners({proc.pid}, port) == set()  # the supervisor itself does not listen
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert not any(_running(pid) for pid in workers)


@needs_proc
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_do_not_outlive_a_killed_supervisor(fresh_databases: FreshDatabase, tmp_path):
    with _serving(fresh_databases, tmp_path) as (proc, _port, workers):
        proc.kill()
        proc.wait()
        assert not any(_running(pid) for pid in workers)


@needs_proc
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_do_not_outlive_a_supervisor_killed_while_they_start(
    fresh_databases: FreshDatabase, tmp_path
):
    url = fresh_databases.url()
    upgrade(url)
    port = _free_port()
    proc = subprocess.Popen(
        [str(BACKBONE), "serve", "--port", str(port), "--workers", "2"],
        env=_env(url, tmp_path, port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 90
        while len(workers) < 2 and proc.poll() is None and time.monotonic() < deadline:
            workers = _children(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    assert len(workers) == 2
    assert not any(_running(pid) for pid in workers)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_worker_whose_supervisor_is_gone_exits_before_importing_anything():
    """A worker arms its parent-death signal first thing, then checks its parent: one started
    for a supervisor that is not its parent (as if it had died) exits without loading uvicorn or
    the application, however long those would take."""
    spec = '{"app": "api.main:app", "host": "127.0.0.1", "port": 1, "options": {}}'
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "cli.worker", str(os.getpid() + 1), spec],
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.decode().splitlines()}
    assert "cli" in imported  # the worker ran (as __main__)
    assert not {"uvicorn", "api", "api.main", "sqlalchemy"} & imported


def test_a_taken_port_is_refused(fresh_databases: FreshDatabase, tmp_path):
    url = fresh_databases.url()
    upgrade(url)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [str(BACKBONE), "serve", "--port", str(port), "--workers", "2"],
            env=_env(url, tmp_path, port),
            capture_output=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert b"already in use" in done.stderr
