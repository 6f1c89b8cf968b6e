"""Commands a data manager runs against a Backbone service, as an OAuth client.

Credentials come from ``--client-id``/``--client-secret`` (or ``BACKBONE_CLIENT_ID`` and
``BACKBONE_CLIENT_SECRET``), or from a credentials file such as ``var/demo-credentials.json``
with ``--as CLIENT_ID``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

agreement_app = typer.Typer(
    help="Agreements: lint, draft, approve, inspect (a data manager's tools).", no_args_is_help=True
)
indicator_app = typer.Typer(
    help="Indicators: define and release (the backbone's tools).", no_args_is_help=True
)
codelist_app = typer.Typer(
    help="Shared code lists: define and list them (the backbone's tools).", no_args_is_help=True
)

Url = Annotated[
    str | None,
    typer.Option(envvar="BACKBONE_URL", help="the service's base URL; default: BACKBONE_ISSUER"),
]
ClientId = Annotated[str | None, typer.Option(envvar="BACKBONE_CLIENT_ID")]
ClientSecret = Annotated[str | None, typer.Option(envvar="BACKBONE_CLIENT_SECRET")]
Credentials = Annotated[
    Path | None, typer.Option(help="a credentials file, e.g. var/demo-credentials.json")
]
As = Annotated[
    str | None, typer.Option("--as", help="the client id to use from the credentials file")
]


def service_url(url: str | None) -> str:
    """``--url``, else ``BACKBONE_URL``, else the issuer every command derives the same way."""
    if url:
        return url
    from core.settings import get_settings

    return str(get_settings().issuer)


@contextmanager
def _client(
    url: str | None,
    client_id: str | None,
    secret: str | None,
    credentials: Path | None,
    as_: str | None,
) -> Iterator[httpx.Client]:
    if credentials is not None:
        entries = {c["client_id"]: c for c in json.loads(credentials.read_text())["clients"]}
        if as_ not in entries:
            raise typer.BadParameter(f"--as must be one of: {', '.join(sorted(entries))}")
        client_id, secret = as_, entries[as_]["client_secret"]
    if not client_id or not secret:
        raise typer.BadParameter("give --client-id and --client-secret, or --credentials with --as")
    with httpx.Client(base_url=service_url(url), timeout=120) as http:
        r = http.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
        )
        if r.status_code != 200:
            typer.secho(
                f"error: could not get a token ({r.status_code}): {r.text[:300]}",
                fg=typer.colors.RED,
                err=True,
            )
            raise typer.Exit(1)
        http.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        yield http


def _show(r: httpx.Response) -> Any:
    body = r.json() if r.headers.get("content-type", "").endswith("json") else r.text
    typer.echo(json.dumps(body, indent=2) if not isinstance(body, str) else body)
    if r.status_code >= 400:
        raise typer.Exit(1)
    return body


def _document(path: Path) -> tuple[bytes, str]:
    raw = path.read_bytes()
    return raw, "application/json" if path.suffix == ".json" else "application/yaml"


@agreement_app.command("lint")
def lint(path: Path, k_floor: int = 5) -> None:
    """Lint an agreement file locally, without a service (code list references are checked by
    the service: ``POST /v1/agreements/lint``)."""
    from agreements.errors import InvalidAgreement
    from agreements.lint import lint as run
    from agreements.parse import parse_document

    try:
        document = parse_document(path.read_bytes(), "json" if path.suffix == ".json" else "yaml")
    except InvalidAgreement as exc:
        for finding in exc.extra["findings"]:
            typer.echo(f"{finding['code']}: {finding['path']}: {finding['message']}")
        raise typer.Exit(1) from None
    findings = run(document, k_floor=k_floor)
    for f in findings:
        typer.echo(f"{'' if f.is_error else 'warning: '}{f.code}: {f.path}: {f.message}")
    if any(f.is_error for f in findings):
        raise typer.Exit(1)
    typer.echo(f"{document.uid}: lints clean ({document.content_hash()})")


@agreement_app.command("draft")
def draft(
    path: Path,
    url: Url = None,
    client_id: ClientId = None,
    client_secret: ClientSecret = None,
    credentials: Credentials = None,
    as_: As = None,
) -> None:
    """Submit an agreement (or an amendment) as a draft."""
    raw, media = _document(path)
    with _client(url, client_id, client_secret, credentials, as_) as http:
        _show(http.post("/v1/agreements", content=raw, headers={"Content-Type": media}))


@agreement_app.command("show")
def show(
    agreement_id: str,
    url: Url = None,
    client_id: ClientId = None,
    client_secret: ClientSecret = None,
    credentials: Credentials = None,
    as_: As = None,
) -> None:
    """An agreement's versions, approvals and status history."""
    with _client(url, client_id, client_secret, credentials, as_) as http:
        _show(http.get(f"/v1/agreements/{agreement_id}"))


@agreement_app.command("approve")
def approve(
    agreement_id: str,
    version: int,
    url: Url = None,
    client_id: ClientId = None,
    client_secret: ClientSecret = None,
    credentials: Credentials = None,
    as_: As = None,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask")] = False,
) -> None:
    """Approve a version for your organization, after showing what you approve."""
    with _client(url, client_id, client_secret, credentials, as_) as http:
        r = http.get(f"/v1/agreements/{agreement_id}/versions/{version}")
        if r.status_code != 200:
            _show(r)
        body = r.json()
        import yaml

        typer.echo(yaml.safe_dump(body["document"], sort_keys=False))
        typer.echo(f"content hash: {body['content_hash']}")
        if not yes and not typer.confirm(
            f"Approve {agreement_id} version {version} for your organization?"
        ):
            raise typer.Exit(1)
        _show(
            http.post(
                f"/v1/agreements/{agreement_id}/approve",
                json={"version": version, "content_hash": body["content_hash"]},
            )
        )


@agreement_app.command("status")
def status(
    agreement_id: str,
    action: Annotated[str, typer.Argument(help="suspend, resume or terminate")],
    reason: str | None = None,
    url: Url = None,
    client_id: ClientId = None,
    client_secret: ClientSecret = None,
    credentials: Credentials = None,
    as_: As = None,
) -> None:
    """Suspend, resume or terminate an agreement (effective on the next request)."""
    if action not in ("suspend", "resume", "terminate"):
        raise typer.BadParameter("action is suspend, resume or terminate")
    with _client(url, client_id, client_secret, credentials, as_) as http:
        _show(http.post(f"/v1/agreements/{agreement_id}/{action}", json={"reason": reason}))


@indicator_app.command("define")
def define(
    path: Path,
    url: Url = None,
    client_id: ClientId = None,
    client_secret: ClientSecret = None,
    credentials: Credentials = None,
    as_: As = None,
) -> None:
    """Define an indicator from a YAML or JSON file (checked against the agreements)."""
    import yaml  # imported here: `backbone submit` shares these options and never reads YAML

    data = yaml.safe_load(path.read_text())
    with _client(url, client_id, client_secret, credentials, as_) as http:
        _show(http.post("/v1/indicators", json=data))


@indicator_app.command("release")
def release(
    indicator_id: str,
    dimension: Annotated[list[str] | None, typer.Option()] = None,
    method: str | None = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print what the release would do (the privacy budgets it would charge and "
            "what would remain) without computing, storing or charging anything.",
        ),
    ] = False,
    url: Url = None,
    client_id: ClientId = None,
    client_secret: ClientSecret = None,
    credentials: Credentials = None,
    as_: As = None,
) -> None:
    """Request a release (suppression or differential privacy) and print its summary."""
    body: dict[str, Any] = {}
    if dimension:
        body["dimensions"] = dimension
    if method:
        body["method"] = method
    if dry_run:
        body["dry_run"] = True
    with _client(url, client_id, client_secret, credentials, as_) as http:
        r = http.post(f"/v1/indicators/{indicator_id}/releases", json=body)
        if r.status_code >= 400 or dry_run:
            _show(r)
            return
        if r.status_code == 202 and r.headers.get("location", "").startswith("/v1/jobs/"):
            # Computed by a background job: wait for it, then read the release.
            from demo.walkthrough import released

            typer.echo(f"computing in the background: {r.headers['location']}", err=True)
            status, summary = released(http, r, {})
            if status != 200:
                typer.echo(json.dumps(summary, indent=2))
                return
            r = http.get(f"/v1/releases/{summary['id']}")
            if r.status_code >= 400:
                _show(r)
                return
        elif r.status_code == 202:
            _show(r)
            return
        out = r.json()
        statuses: dict[str, int] = {}
        for row in out["rows"]:
            statuses[row[-1]] = statuses.get(row[-1], 0) + 1
        typer.echo(
            json.dumps(
                {k: out[k] for k in ("id", "indicator", "method", "dimensions", "parameters")},
                indent=2,
            )
        )
        typer.echo(f"{len(out['rows'])} cells by status: {statuses}")


@codelist_app.command("create")
def codelist_create(
    path: Path,
    url: Url = None,
    client_id: ClientId = None,
    client_secret: ClientSecret = None,
    credentials: Credentials = None,
    as_: As = None,
) -> None:
    """Define a code list from a YAML or JSON file (its next version, if the id exists)."""
    import yaml  # imported here: `backbone submit` shares these options and never reads YAML

    data = yaml.safe_load(path.read_text())
    with _client(url, client_id, client_secret, credentials, as_) as http:
        _show(http.post("/v1/codelists", json=data))


@codelist_app.command("list")
def codelist_list(
    url: Url = None,
    client_id: ClientId = None,
    client_secret: ClientSecret = None,
    credentials: Credentials = None,
    as_: As = None,
) -> None:
    """The latest version of every code list: reference, kind, number of codes and title."""
    with _client(url, client_id, client_secret, credentials, as_) as http:
        r = http.get("/v1/codelists")
        if r.status_code >= 400:
            _show(r)
        for item in r.json():
            typer.echo(f"{item['ref']}\t{item['kind']}\t{item['code_count']}\t{item['title']}")
