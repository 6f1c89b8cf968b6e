"""``backbone submit FILE --dataset D``: a partner system's upload, safe to rerun from cron.

The Idempotency-Key is derived from the file's bytes and what it is submitted as (dataset,
period, replaces, sheet), so a rerun of the same command stores nothing twice: it prints the
original receipt. CSV, TSV, NDJSON and JSON are gzip-compressed on the way (the service accepts
``Content-Encoding: gzip``); spreadsheets and ``.gz`` files are sent as they are.

A file up to ``--resumable-above`` bytes (256 MiB by default) goes in one request, compressed
while it is sent (the service ingests as the bytes arrive, so the compression overlaps its work)
and retried whole; a larger one goes as a resumable upload (tus 1.0.0, with tuspy, the tus project's client): after
a cut connection it asks the service how much arrived and sends the rest. Connection errors,
timeouts and 503s are retried with exponential backoff (honouring Retry-After), ``--retries``
times.

Exit status: 0 stored (or an earlier identical submission's receipt); 1 refused (the problem's
title, detail and row report on stderr); 2 a usage error; 3 the service could not be reached or
kept failing after the retries.

It is a command of its own, parsed with the standard library's argparse and started without the
operator's commands: a partner system runs it from cron, often for a small file, and Typer (which
builds a pydantic adapter for every option) with the service's modules took longer to import than
a small upload takes.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import os
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
MEDIA = {
    ".csv": "text/csv",
    ".tsv": "text/csv",
    ".txt": "text/csv",
    ".ndjson": "application/x-ndjson",
    ".jsonl": "application/x-ndjson",
    ".json": "application/json",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".ods": "application/vnd.oasis.opendocument.spreadsheet",
}
COMPRESSIBLE = {"text/csv", "application/x-ndjson", "application/json"}
# A file up to this size is streamed in one request, compressed as it goes (a failure sends it
# again whole: at most a few tens of MB compressed). A larger one is a resumable upload, which
# must know its compressed length first and so compresses the file before sending a byte.
DEFAULT_RESUMABLE_ABOVE = 256 * 1024 * 1024
DEFAULT_CHUNK = 64 * 1024 * 1024
# gzip level 1: on a fast link the upload is not the bottleneck and a higher level costs more
# client time than it saves in bytes; on a slow one it still shrinks CSV about fivefold.
GZIP_LEVEL = 1
_BLOCK = 4 << 20


class Unreachable(Exception):
    """The service could not be reached, or kept failing, after the retries."""


class Refused(Exception):
    """The service refused the submission: its problem document."""

    def __init__(self, problem: dict[str, Any]) -> None:
        super().__init__(problem.get("title", "refused"))
        self.problem = problem


@dataclass(frozen=True)
class Payload:
    """The bytes to send and what they are."""

    path: Path
    content_type: str
    content_encoding: str | None
    size: int


class UsageError(Exception):
    """A command line that cannot run (exit status 2)."""


def media_of(path: Path) -> tuple[str, bool]:
    """The content type from the file's extension, and whether it is already gzip-compressed."""
    suffixes = [s.lower() for s in path.suffixes]
    gz = bool(suffixes) and suffixes[-1] == ".gz"
    ext = suffixes[-2] if gz and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
    if ext not in MEDIA or (gz and MEDIA[ext] not in COMPRESSIBLE):
        raise UsageError(
            f"FILE: cannot tell the format from the extension; use one of "
            f"{', '.join(sorted(MEDIA))} (optionally .gz for the text formats)"
        )
    return MEDIA[ext], gz


def _key_digest(dataset: str, period: str | None, replaces: str | None, sheet: str | None) -> Any:
    digest = hashlib.sha256()
    for part in (dataset, period or "", replaces or "", sheet or ""):
        digest.update(part.encode() + b"\0")
    return digest


def idempotency_key(
    path: Path, dataset: str, period: str | None, replaces: str | None, sheet: str | None
) -> str:
    """``submit-`` and a SHA-256 of what is submitted as what, read in one pass over the file
    (about 70 ms for 100 MB): the same file sent the same way is the same submission, whether it
    goes whole or resumable."""
    digest = _key_digest(dataset, period, replaces, sheet)
    with path.open("rb") as src:
        while chunk := src.read(_BLOCK):
            digest.update(chunk)
    return f"submit-{digest.hexdigest()}"


def compressed_blocks(path: Path) -> Iterator[bytes]:
    """The gzip of the file as :func:`prepare` writes it (the same bytes), made while it is
    read: blocks compressed on every core, in order, each a gzip member of its own (a gzip
    stream may hold several; the service reads them in order). Read-ahead is bounded, so the
    memory held is a few blocks per core whatever the file's size."""
    workers = os.cpu_count() or 1
    with path.open("rb") as src, ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[Future[bytes]] = deque()
        while block := src.read(_BLOCK):
            pending.append(pool.submit(gzip.compress, block, GZIP_LEVEL, mtime=0))
            while len(pending) > 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def on_this_machine(url: str) -> bool:
    """Is the service at ``url`` on a loopback address (the bytes never cross a network)?"""
    import ipaddress
    from urllib.parse import urlsplit

    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def compresses(path: Path, mode: str, url: str) -> bool:
    """Whether to gzip the file on the way: a text format not compressed already, unless
    ``mode`` is ``never``, or ``auto`` and the service is on this machine (compressing there
    saves no network and takes CPU from the service that ingests it)."""
    ctype, gz = media_of(path)
    if gz or ctype not in COMPRESSIBLE or mode == "never":
        return False
    return mode == "always" or not on_this_machine(url)


def prepare(
    path: Path,
    workdir: Path,
    dataset: str,
    period: str | None,
    replaces: str | None,
    sheet: str | None,
    compress: bool = True,
) -> tuple[Payload, str]:
    """The payload (the file itself, or a gzip of it: deterministic, no name and no time, so
    that a rerun sends the same bytes) and the Idempotency-Key: ``submit-`` and a SHA-256 of
    what is submitted as what (the same file sent the same way is the same submission). One
    pass over the file."""
    ctype, gz = media_of(path)
    key = idempotency_key(path, dataset, period, replaces, sheet)
    out = workdir / "body.gz" if compress else path
    if compress:
        with out.open("wb") as sink:
            for block in compressed_blocks(path):
                sink.write(block)
    payload = Payload(out, ctype, "gzip" if gz or compress else None, out.stat().st_size)
    return payload, key


# -- progress ------------------------------------------------------------------------------------


class Progress:
    """A rich progress bar on a terminal; otherwise a plain line on stderr every tenth."""

    def __init__(self, total: int, label: str) -> None:
        self.total = max(total, 1)
        self.label = label
        self.tty = sys.stderr.isatty()
        self._bar: Any = None
        self._task: Any = None
        self._logged = -1
        if self.tty:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )
            from rich.progress import Progress as Bar

            self._bar = Bar(
                "{task.description}",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(label, total=self.total)

    def update(self, done: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done)
            return
        tenth = min(10, done * 10 // self.total)
        if tenth > self._logged:
            self._logged = tenth
            log(f"{self.label}: {done} of {self.total} bytes ({tenth * 10}%)")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def log(message: str) -> None:
    print(f"backbone submit: {message}", file=sys.stderr, flush=True)


# -- HTTP ----------------------------------------------------------------------------------------

RETRYABLE = (OSError, http.client.HTTPException)


@dataclass(frozen=True)
class Response:
    """A whole response: its status, headers and body."""

    status_code: int
    headers: Any  # http.client.HTTPMessage: case-insensitive .get
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class Http:
    """Requests to one service over one kept-alive connection, with the standard library's
    http.client: the command makes a handful of requests, and importing httpx (with httpcore)
    took longer than sending a small file. Proxies from ``HTTPS_PROXY``/``HTTP_PROXY`` and
    ``NO_PROXY``, as other tools read them; certificates checked against the operating system's
    trust store (where an organization installs its own CA)."""

    def __init__(self, base: str) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"--url: {base} is not an http(s) URL")
        self.base = base.rstrip("/")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")
        self._conn: http.client.HTTPConnection | None = None
        self._proxy: tuple[str, int] | None = None
        from urllib.request import (  # type: ignore[attr-defined]
            getproxies_environment,
            proxy_bypass_environment,
        )

        proxy = getproxies_environment().get(parts.scheme)
        if proxy and not proxy_bypass_environment(self.host):
            pp = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
            self._proxy = (pp.hostname or "", pp.port or 80)

    def join(self, location: str) -> str:
        from urllib.parse import urljoin

        return urljoin(self.base + "/", location)

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            host, port = self._proxy or (self.host, self.port)
            conn: http.client.HTTPConnection
            if self.https:
                import ssl

                conn = http.client.HTTPSConnection(
                    host, port, timeout=60, context=ssl.create_default_context()
                )
            else:
                conn = http.client.HTTPConnection(host, port, timeout=60)
            if self._proxy and self.https:
                conn.set_tunnel(self.host, self.port)
            conn.connect()
            # Connected: the answer to a large body comes when the service has ingested it.
            if conn.sock is not None:
                conn.sock.settimeout(None)
            self._conn = conn
        return self._conn

    def _target(self, url: str, params: dict[str, str] | None) -> str:
        from urllib.parse import urlencode, urlsplit

        if "://" in url:
            parts = urlsplit(url)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
        else:
            path = self.prefix + url
        if params:
            path += ("&" if "?" in path else "?") + urlencode(params)
        if self._proxy and not self.https:
            return f"http://{self.host}:{self.port}{path}"
        return path

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        content: Any = None,
        params: dict[str, str] | None = None,
        data: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> Response:
        import base64

        sent = {"User-Agent": "backbone-submit", **(headers or {})}
        if data is not None:
            from urllib.parse import urlencode

            content = urlencode(data).encode()
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        if auth is not None:
            from urllib.parse import quote

            pair = f"{quote(auth[0], safe='')}:{quote(auth[1], safe='')}".encode()
            sent["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        if content is None and method in ("POST", "PATCH", "PUT"):
            content = b""
        try:
            conn = self._connection()
            conn.request(method, self._target(url, params), body=content, headers=sent)
            r = conn.getresponse()
            body = r.read()
        except BaseException:
            self.close()
            raise
        if r.will_close:
            self.close()
        return Response(r.status, r.headers, body)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _retry_after(r: Response | None, fallback: float) -> float:
    if r is not None:
        value = r.headers.get("retry-after", "")
        if value.isdigit():
            return min(float(value), 300.0)
    return fallback


def backoff(attempt: int, base: float) -> float:
    return float(min(base * (2**attempt), 60.0))


class Session:
    """A connection to the service with a bearer token that is renewed before it lapses (a long upload
    outlives an access token)."""

    def __init__(self, base: str, client_id: str, secret: str, retries: int, base_delay: float):
        self.http = Http(base)
        self.client_id, self.secret = client_id, secret
        self.retries, self.base_delay = retries, base_delay
        self._token: str | None = None
        self._expires = 0.0

    def close(self) -> None:
        self.http.close()

    def token(self) -> str:
        if self._token is None or time.monotonic() > self._expires - 30:
            r = self.request(
                "POST",
                "/oauth/token",
                authenticated=False,
                data={"grant_type": "client_credentials"},
                auth=(self.client_id, self.secret),
            )
            if r.status_code != 200:
                raise Refused(
                    {
                        "title": "could not get an access token",
                        "status": r.status_code,
                        "detail": r.text[:300],
                    }
                )
            body = r.json()
            self._token = str(body["access_token"])
            self._expires = time.monotonic() + float(body.get("expires_in", 300))
        return self._token

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    def request(
        self,
        method: str,
        url: str,
        *,
        authenticated: bool = True,
        body: Callable[[], Any] | None = None,
        **kw: Any,
    ) -> Response:
        """One request, retried on connection errors, timeouts and 503."""
        given = dict(kw.pop("headers", {}))
        last: BaseException | None = None
        r: Response | None = None
        for attempt in range(self.retries + 1):
            headers = {**given, **(self.auth() if authenticated else {})}
            try:
                content = body() if body is not None else None
                r = self.http.request(method, url, headers=headers, content=content, **kw)
            except RETRYABLE as exc:
                last, r = exc, None
                delay = backoff(attempt, self.base_delay)
            else:
                if r.status_code != 503:
                    return r
                last = None
                delay = _retry_after(r, backoff(attempt, self.base_delay))
            if attempt < self.retries:
                why = "service unavailable (503)" if r is not None else type(last).__name__
                log(f"{why}; retrying in {delay:.1f} s ({attempt + 1} of {self.retries})")
                time.sleep(delay)
        if last is not None:
            raise Unreachable(f"cannot reach the service ({type(last).__name__}): {last}")
        raise Unreachable("the service kept answering 503 (unavailable)")


class _TokenHeaders(Mapping[str, str]):
    """tuspy reads its client's headers for every request: the current token each time."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def __getitem__(self, key: str) -> str:
        if key != "Authorization":
            raise KeyError(key)
        return f"Bearer {self.session.token()}"

    def __iter__(self) -> Iterator[str]:
        return iter(("Authorization",))

    def __len__(self) -> int:
        return 1


def _problem(r: Response) -> dict[str, Any]:
    try:
        body = r.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        return body
    return {"title": f"the service answered {r.status_code}", "status": r.status_code}


# -- the two ways ----------------------------------------------------------------------------------


def send_whole(
    session: Session,
    dataset: str,
    path: Path,
    query: dict[str, str],
    key: str,
    compress: bool = True,
) -> dict[str, Any]:
    """One POST of the whole file, compressed as it is sent (retried whole). The service
    ingests while the bytes arrive, so compressing here overlaps its work instead of preceding
    it. Progress counts the file's bytes read."""
    ctype, gz = media_of(path)
    size = path.stat().st_size
    progress = Progress(size, "sending")

    def chunks() -> Iterator[bytes]:
        done = 0
        if not compress:
            with path.open("rb") as fh:
                while chunk := fh.read(_BLOCK):
                    done += len(chunk)
                    progress.update(done)
                    yield chunk
            return
        for block in compressed_blocks(path):
            done = min(size, done + _BLOCK)
            progress.update(done)
            yield block

    headers = {"Content-Type": ctype, "Idempotency-Key": key}
    if compress or gz:
        headers["Content-Encoding"] = "gzip"
    if not compress:
        # The length is known: sent as is rather than in chunks, which the service reads
        # without chunk framing.
        headers["Content-Length"] = str(size)
    try:
        r = session.request(
            "POST",
            f"/v1/datasets/{dataset}/submissions",
            params=query,
            headers=headers,
            body=chunks,
        )
    finally:
        progress.close()
    if r.status_code == 201:
        return dict(r.json())
    raise Refused(_problem(r))


def _metadata(values: dict[str, str]) -> str:
    import base64

    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def send_resumable(
    session: Session,
    dataset: str,
    payload: Payload,
    query: dict[str, str],
    key: str,
    chunk_size: int,
) -> dict[str, Any]:
    """A tus upload: created here (with the Idempotency-Key, so a rerun finds it), its bytes
    sent by tuspy, resumed from the service's offset after every failure."""
    from tusclient.client import TusClient
    from tusclient.exceptions import TusCommunicationError

    meta = {k: v for k, v in query.items()}
    meta["content-type"] = payload.content_type
    if payload.content_encoding:
        meta["content-encoding"] = payload.content_encoding
    r = session.request(
        "POST",
        f"/v1/datasets/{dataset}/uploads",
        headers={
            "Tus-Resumable": "1.0.0",
            "Upload-Length": str(payload.size),
            "Upload-Metadata": _metadata(meta),
            "Idempotency-Key": key,
        },
    )
    if r.status_code != 201:
        raise Refused(_problem(r))
    location = session.http.join(r.headers["location"])
    if r.headers.get("idempotent-replayed"):
        log("an upload of this file was started before; resuming it")
    client = TusClient(location, headers=_TokenHeaders(session))  # type: ignore[arg-type]
    progress = Progress(payload.size, "uploading (resumable)")
    try:
        for attempt in range(session.retries + 1):
            try:
                uploader = client.uploader(
                    str(payload.path), url=location, chunk_size=chunk_size, retries=0
                )
                if uploader.offset:
                    log(f"resuming at byte {uploader.offset} of {payload.size}")
                progress.update(uploader.offset)
                while uploader.offset < payload.size:
                    uploader.upload_chunk()  # type: ignore[no-untyped-call]
                    progress.update(uploader.offset)
                break
            except TusCommunicationError as exc:
                status = exc.status_code
                if status is not None and status not in (409, 423, 502, 503, 504):
                    break  # an answer, not a failure: the upload's state says what happened
                if attempt == session.retries:
                    raise Unreachable(
                        f"the upload failed after {session.retries} retries: {exc}"
                    ) from None
                delay = backoff(attempt, session.base_delay)
                log(
                    f"upload interrupted ({status or type(exc.__context__ or exc).__name__}); "
                    f"resuming in {delay:.1f} s ({attempt + 1} of {session.retries})"
                )
                time.sleep(delay)
    finally:
        progress.close()
    for _attempt in range(session.retries + 1):
        state = session.request("GET", location)
        if state.status_code != 200:
            raise Refused(_problem(state))
        body = state.json()
        if body["state"] == "complete":
            return dict(body["submission"])
        if body["state"] == "refused":
            raise Refused(body["problem"])
        if body["state"] == "expired":
            raise Refused({"title": "the upload expired before it was completed"})
        if body["offset"] < body["length"]:
            raise Unreachable("the upload is incomplete; run the command again to resume it")
        # Every byte arrived but the ingest did not run to its end (the service was busy or
        # restarted): an empty PATCH at the end runs it again.
        session.request(
            "PATCH",
            location,
            headers={
                "Tus-Resumable": "1.0.0",
                "Upload-Offset": str(body["length"]),
                "Content-Type": "application/offset+octet-stream",
            },
            body=lambda: b"",
        )
    raise Unreachable("the service did not finish processing the upload")


def _credentials(
    client_id: str | None, secret: str | None, credentials: Path | None, as_: str | None
) -> tuple[str, str]:
    if credentials is not None:
        entries = {c["client_id"]: c for c in json.loads(credentials.read_text())["clients"]}
        if as_ not in entries:
            raise UsageError(f"--as must be one of: {', '.join(sorted(entries))}")
        return str(as_), str(entries[as_]["client_secret"])
    if not client_id or not secret:
        raise UsageError(
            "give --client-id and --client-secret (or BACKBONE_CLIENT_ID and "
            "BACKBONE_CLIENT_SECRET), or --credentials with --as"
        )
    return client_id, secret


def report_refusal(problem: dict[str, Any]) -> None:
    err = sys.stderr
    print(f"refused: {problem.get('title', 'refused')}", file=err)
    if problem.get("detail"):
        print(str(problem["detail"]), file=err)
    if problem.get("report"):
        print(json.dumps(problem["report"], indent=2), file=err)
    if problem.get("type"):
        print(f"({problem['type']})", file=err)


def _bounded(kind: Callable[[str], Any], low: float, high: float | None = None) -> Any:
    def parse(text: str) -> Any:
        value = kind(text)
        if value < low or (high is not None and value > high):
            bounds = f"at least {low:g}" if high is None else f"from {low:g} to {high:g}"
            raise ValueError(bounds)
        return value

    parse.__name__ = kind.__name__
    return parse


def parser() -> Any:
    """The command line of ``backbone submit``."""
    import argparse

    env = os.environ.get
    p = argparse.ArgumentParser(
        prog="backbone submit",
        description="Submit a file of records (CSV, TSV, NDJSON, JSON, .xlsx, .ods; .gz) and "
        "print the receipt. Safe to rerun: the same file is stored once. Exit status: 0 stored, "
        "1 refused, 2 usage error, 3 service unreachable after the retries.",
    )
    p.add_argument("file", type=Path, metavar="FILE", help="the records")
    p.add_argument("--dataset", required=True, help="the dataset to submit to")
    p.add_argument("--period", help="the period the records are for")
    p.add_argument("--replaces", help="the id of the submission this one replaces")
    p.add_argument("--sheet", help="the sheet of a spreadsheet (the first by default)")
    p.add_argument(
        "--compress",
        choices=("auto", "always", "never"),
        default="auto",
        help="gzip CSV, TSV, NDJSON and JSON on the way: always, never, or auto (always, except "
        "to a service on this machine's loopback address; default: %(default)s)",
    )
    p.add_argument(
        "--resumable-above",
        type=_bounded(int, 0),
        default=DEFAULT_RESUMABLE_ABOVE,
        metavar="BYTES",
        help="send files larger than this as a resumable upload (smaller ones are streamed in "
        "one request, compressed as they go); 0: always (default: %(default)s)",
    )
    p.add_argument(
        "--chunk-size",
        type=_bounded(int, 65536),
        default=DEFAULT_CHUNK,
        metavar="BYTES",
        help="bytes per request of a resumable upload (default: %(default)s)",
    )
    p.add_argument(
        "--retries",
        type=_bounded(int, 0, 50),
        default=5,
        help="retries after connection errors and 503s (default: %(default)s)",
    )
    p.add_argument(
        "--retry-delay",
        type=_bounded(float, 0),
        default=1.0,
        metavar="SECONDS",
        help="the first retry's delay (then doubled; default: %(default)s)",
    )
    p.add_argument(
        "--url", default=env("BACKBONE_URL"), help="the service's base URL [env: BACKBONE_URL]"
    )
    p.add_argument(
        "--client-id", default=env("BACKBONE_CLIENT_ID"), help="[env: BACKBONE_CLIENT_ID]"
    )
    p.add_argument(
        "--client-secret",
        default=env("BACKBONE_CLIENT_SECRET"),
        help="[env: BACKBONE_CLIENT_SECRET]",
    )
    p.add_argument(
        "--credentials", type=Path, help="a credentials file, e.g. var/demo-credentials.json"
    )
    p.add_argument(
        "--as",
        dest="as_",
        metavar="CLIENT_ID",
        help="the client id to use from the credentials file",
    )
    return p


def service_url(url: str | None) -> str:
    """``--url`` (or ``BACKBONE_URL``), else the issuer every command derives the same way."""
    if url:
        return url
    from core.settings import get_settings

    return str(get_settings().issuer)


def main(argv: list[str]) -> int:
    """Run ``backbone submit`` with ``argv`` (the words after ``submit``); the exit status."""
    p = parser()
    args = p.parse_args(argv)
    file: Path = args.file
    try:
        if not file.is_file():
            raise UsageError(f"FILE: {file} is not a readable file")
        media_of(file)
        cid, secret = _credentials(args.client_id, args.client_secret, args.credentials, args.as_)
        base = service_url(args.url)
        session = Session(base, cid, secret, args.retries, args.retry_delay)
    except UsageError as exc:
        p.error(str(exc))
    query = {
        k: v
        for k, v in (("period", args.period), ("replaces", args.replaces), ("sheet", args.sheet))
        if v
    }
    dataset = args.dataset
    compress = compresses(file, args.compress, base)
    with ExitStack() as stack:
        stack.callback(session.close)
        try:
            if file.stat().st_size > args.resumable_above:
                workdir = Path(
                    stack.enter_context(tempfile.TemporaryDirectory(prefix="backbone-submit-"))
                )
                payload, key = prepare(
                    file, workdir, dataset, args.period, args.replaces, args.sheet, compress
                )
                receipt = send_resumable(session, dataset, payload, query, key, args.chunk_size)
            else:
                key = idempotency_key(file, dataset, args.period, args.replaces, args.sheet)
                receipt = send_whole(session, dataset, file, query, key, compress)
        except Refused as exc:
            report_refusal(exc.problem)
            return EXIT_REFUSED
        except Unreachable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_UNREACHABLE
    print(json.dumps(receipt, indent=2))
    return 0
