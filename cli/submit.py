"""``backbone submit FILE --dataset D``: a partner system's upload, safe to rerun from cron.

The Idempotency-Key is derived from the file's bytes and what it is submitted as (dataset,
period, replaces, sheet), so a rerun of the same command stores nothing twice: it prints the
original receipt. CSV, TSV, NDJSON and JSON are gzip-compressed on the way (the service accepts
``Content-Encoding: gzip``); spreadsheets and ``.gz`` files are sent as they are.

A file up to ``--resumable-above`` bytes (after compression) goes in one request, retried whole;
a larger one goes as a resumable upload (tus 1.0.0, with tuspy, the tus project's client): after
a cut connection it asks the service how much arrived and sends the rest. Connection errors,
timeouts and 503s are retried with exponential backoff (honouring Retry-After), ``--retries``
times.

Exit status: 0 stored (or an earlier identical submission's receipt); 1 refused (the problem's
title, detail and row report on stderr); 2 a usage error; 3 the service could not be reached or
kept failing after the retries.
"""

from __future__ import annotations

import gzip
import hashlib
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
from typing import Annotated, Any

import httpx
import typer

from cli.remote import As, ClientId, ClientSecret, Credentials, Url, service_url

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
DEFAULT_RESUMABLE_ABOVE = 8 * 1024 * 1024
DEFAULT_CHUNK = 64 * 1024 * 1024
# gzip level 1: on a fast link the upload is not the bottleneck and a higher level costs more
# client time than it saves in bytes; on a slow one it still shrinks CSV about fivefold.
GZIP_LEVEL = 1
_READ = 1 << 20
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


def media_of(path: Path) -> tuple[str, bool]:
    """The content type from the file's extension, and whether it is already gzip-compressed."""
    suffixes = [s.lower() for s in path.suffixes]
    gz = bool(suffixes) and suffixes[-1] == ".gz"
    ext = suffixes[-2] if gz and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
    if ext not in MEDIA or (gz and MEDIA[ext] not in COMPRESSIBLE):
        raise typer.BadParameter(
            f"cannot tell the format from the extension; use one of {', '.join(sorted(MEDIA))} "
            "(optionally .gz for the text formats)",
            param_hint="FILE",
        )
    return MEDIA[ext], gz


def _key_digest(dataset: str, period: str | None, replaces: str | None, sheet: str | None) -> Any:
    digest = hashlib.sha256()
    for part in (dataset, period or "", replaces or "", sheet or ""):
        digest.update(part.encode() + b"\0")
    return digest


def prepare(
    path: Path,
    workdir: Path,
    dataset: str,
    period: str | None,
    replaces: str | None,
    sheet: str | None,
) -> tuple[Payload, str]:
    """The payload (the file itself, or a gzip of it: deterministic, no name and no time, so
    that a rerun sends the same bytes) and the Idempotency-Key: ``submit-`` and a SHA-256 of
    what is submitted as what (the same file sent the same way is the same submission). One
    pass over the file."""
    ctype, gz = media_of(path)
    digest = _key_digest(dataset, period, replaces, sheet)
    compress = not gz and ctype in COMPRESSIBLE
    out = workdir / "body.gz" if compress else path
    with ExitStack() as stack:
        src = stack.enter_context(path.open("rb"))
        if not compress:
            while chunk := src.read(_READ):
                digest.update(chunk)
        else:
            # Blocks compressed on every core, each a gzip member of its own (a gzip stream may
            # hold several; the service reads them in order): the same bytes for the same file.
            sink = stack.enter_context(out.open("wb"))
            workers = os.cpu_count() or 1
            pool = stack.enter_context(ThreadPoolExecutor(max_workers=workers))
            pending: deque[Future[bytes]] = deque()
            while block := src.read(_BLOCK):
                digest.update(block)
                pending.append(pool.submit(gzip.compress, block, GZIP_LEVEL, mtime=0))
                while len(pending) > 2 * workers:
                    sink.write(pending.popleft().result())
            while pending:
                sink.write(pending.popleft().result())
    payload = Payload(out, ctype, "gzip" if gz or compress else None, out.stat().st_size)
    return payload, f"submit-{digest.hexdigest()}"


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
    typer.echo(f"backbone submit: {message}", err=True)


# -- HTTP ----------------------------------------------------------------------------------------

RETRYABLE = (httpx.TransportError,)


def _retry_after(r: httpx.Response | None, fallback: float) -> float:
    if r is not None:
        value = r.headers.get("retry-after", "")
        if value.isdigit():
            return min(float(value), 300.0)
    return fallback


def backoff(attempt: int, base: float) -> float:
    return float(min(base * (2**attempt), 60.0))


class Session:
    """An httpx client with a bearer token that is renewed before it lapses (a long upload
    outlives an access token)."""

    def __init__(self, base: str, client_id: str, secret: str, retries: int, base_delay: float):
        self.http = httpx.Client(base_url=base, timeout=httpx.Timeout(60.0, read=None))
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
    ) -> httpx.Response:
        """One request, retried on connection errors, timeouts and 503."""
        given = dict(kw.pop("headers", {}))
        last: BaseException | None = None
        r: httpx.Response | None = None
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


def _problem(r: httpx.Response) -> dict[str, Any]:
    try:
        body = r.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        return body
    return {"title": f"the service answered {r.status_code}", "status": r.status_code}


# -- the two ways ----------------------------------------------------------------------------------


def send_whole(
    session: Session, dataset: str, payload: Payload, query: dict[str, str], key: str
) -> dict[str, Any]:
    """One POST of the whole body (retried whole)."""
    progress = Progress(payload.size, "uploading")

    def chunks() -> Iterator[bytes]:
        done = 0
        with payload.path.open("rb") as fh:
            while chunk := fh.read(_READ):
                done += len(chunk)
                progress.update(done)
                yield chunk

    headers = {"Content-Type": payload.content_type, "Idempotency-Key": key}
    if payload.content_encoding:
        headers["Content-Encoding"] = payload.content_encoding
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
    location = str(session.http.base_url.join(r.headers["location"]))
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
            raise typer.BadParameter(f"--as must be one of: {', '.join(sorted(entries))}")
        return str(as_), str(entries[as_]["client_secret"])
    if not client_id or not secret:
        raise typer.BadParameter(
            "give --client-id and --client-secret (or BACKBONE_CLIENT_ID and "
            "BACKBONE_CLIENT_SECRET), or --credentials with --as"
        )
    return client_id, secret


def report_refusal(problem: dict[str, Any]) -> None:
    title = problem.get("title", "refused")
    typer.secho(f"refused: {title}", fg=typer.colors.RED, err=True)
    if problem.get("detail"):
        typer.echo(str(problem["detail"]), err=True)
    if problem.get("report"):
        typer.echo(json.dumps(problem["report"], indent=2), err=True)
    if problem.get("type"):
        typer.echo(f"({problem['type']})", err=True)


def submit(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="the records")
    ],
    dataset: Annotated[str, typer.Option(help="the dataset to submit to")],
    period: Annotated[str | None, typer.Option(help="the period the records are for")] = None,
    replaces: Annotated[
        str | None, typer.Option(help="the id of the submission this one replaces")
    ] = None,
    sheet: Annotated[
        str | None, typer.Option(help="the sheet of a spreadsheet (the first by default)")
    ] = None,
    resumable_above: Annotated[
        int,
        typer.Option(
            min=0,
            help="send bodies larger than this many bytes (after compression) as a resumable "
            "upload; 0: always",
        ),
    ] = DEFAULT_RESUMABLE_ABOVE,
    chunk_size: Annotated[
        int, typer.Option(min=65536, help="bytes per request of a resumable upload")
    ] = DEFAULT_CHUNK,
    retries: Annotated[
        int, typer.Option(min=0, max=50, help="retries after connection errors and 503s")
    ] = 5,
    retry_delay: Annotated[
        float, typer.Option(min=0, help="the first retry's delay in seconds (then doubled)")
    ] = 1.0,
    url: Url = None,
    client_id: ClientId = None,
    client_secret: ClientSecret = None,
    credentials: Credentials = None,
    as_: As = None,
) -> None:
    """Submit a file of records (CSV, TSV, NDJSON, JSON, .xlsx, .ods; .gz) and print the
    receipt. Safe to rerun: the same file is stored once. Exit status: 0 stored, 1 refused,
    2 usage error, 3 service unreachable after the retries."""
    media_of(file)
    cid, secret = _credentials(client_id, client_secret, credentials, as_)
    query = {k: v for k, v in (("period", period), ("replaces", replaces), ("sheet", sheet)) if v}
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="backbone-submit-")))
        payload, key = prepare(file, workdir, dataset, period, replaces, sheet)
        session = Session(service_url(url), cid, secret, retries, retry_delay)
        stack.callback(session.close)
        try:
            if payload.size > resumable_above:
                receipt = send_resumable(session, dataset, payload, query, key, chunk_size)
            else:
                receipt = send_whole(session, dataset, payload, query, key)
        except Refused as exc:
            report_refusal(exc.problem)
            raise typer.Exit(EXIT_REFUSED) from None
        except Unreachable as exc:
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(EXIT_UNREACHABLE) from None
    typer.echo(json.dumps(receipt, indent=2))
