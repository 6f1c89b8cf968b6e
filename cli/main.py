"""``backbone``: the operator's and data manager's command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.database import command_context, unit_of_work

DEBUG_VARIABLE = "BACKBONE_DEBUG"


def _first_line(text: str, limit: int = 300) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:limit]


def error_message(exc: BaseException) -> tuple[str, int]:
    """One line for an operator, and the exit status, for an error a command did not handle.

    Database errors are named by the driver's first line only: SQLAlchemy's own text repeats
    the statement and its parameters, which may hold record values or identifiers.
    """
    import httpx
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError

    from core.errors import DomainError
    from core.keys import MasterKeyError
    from core.settings import ConfigurationError

    if isinstance(exc, DomainError):
        return f"error: {exc.detail}", 1
    if isinstance(exc, MasterKeyError):
        return f"error: {exc}", 2
    if isinstance(exc, ConfigurationError):
        return f"error: refusing to start: {exc}", 2
    if isinstance(exc, DBAPIError):
        text = _first_line(str(exc.orig))
        if "no such table" in text or ("does not exist" in text and "relation" in text):
            return "error: the database is not migrated; run `backbone migrate` first", 1
        if (
            exc.connection_invalidated
            or isinstance(exc.orig, ConnectionError)
            or (type(exc).__name__ in ("OperationalError", "InterfaceError"))
        ):
            return f"error: the database cannot be used (BACKBONE_DATABASE_URL): {text}", 1
        return f"error: the database refused the command: {text}", 1
    if isinstance(exc, SQLAlchemyError):
        return f"error: database error ({type(exc).__name__})", 1
    if isinstance(exc, httpx.TransportError):
        return f"error: cannot reach the service ({type(exc).__name__}): {_first_line(str(exc))}", 1
    if isinstance(exc, OSError):
        return f"error: {exc.strerror or type(exc).__name__}: {exc.filename or ''}".rstrip(": "), 1
    return f"error: {type(exc).__name__}: {_first_line(str(exc))}", 1


class _Cli(typer.Typer):
    """Every command's unexpected error becomes one line on stderr and a non-zero exit status,
    not a traceback (``BACKBONE_DEBUG=1`` shows the traceback)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        import os

        try:
            return super().__call__(*args, **kwargs)
        except KeyboardInterrupt:
            sys.exit(130)
        except Exception as exc:
            if os.environ.get(DEBUG_VARIABLE):
                raise
            message, status = error_message(exc)
            typer.secho(message, fg=typer.colors.RED, err=True)
            sys.exit(status)


app = _Cli(
    help="Backbone: federated data sharing for Collective Impact initiatives.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
org_app = typer.Typer(help="Organizations.", no_args_is_help=True)
client_app = typer.Typer(help="OAuth clients.", no_args_is_help=True)
keys_app = typer.Typer(help="Signing keys.", no_args_is_help=True)
user_app = typer.Typer(help="People who sign in to the console.", no_args_is_help=True)
idp_app = typer.Typer(
    help="Organizations' own identity providers (OpenID Connect) for signing in.",
    no_args_is_help=True,
)
app.add_typer(org_app, name="org")
app.add_typer(user_app, name="user")
app.add_typer(idp_app, name="idp")
app.add_typer(client_app, name="client")
app.add_typer(keys_app, name="keys")


def _submit(ctx: typer.Context) -> None:
    """Submit a file of records from a partner system and print the receipt (safe to rerun;
    `backbone submit --help` for its options)."""
    from cli.submit import main

    raise typer.Exit(main(list(ctx.args)))


def _register_remote() -> None:
    from cli.audit import audit_app
    from cli.jobs import worker
    from cli.records import purge as records_purge
    from cli.records import records_app
    from cli.releases import releases_app
    from cli.remote import agreement_app, codelist_app, indicator_app
    from cli.webhooks import webhooks_app

    app.add_typer(records_app, name="records")
    app.add_typer(releases_app, name="releases")
    app.command("purge")(records_purge)
    app.command("worker")(worker)
    app.command(
        "submit",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        add_help_option=False,
    )(_submit)
    app.add_typer(agreement_app, name="agreement")
    app.add_typer(indicator_app, name="indicator")
    app.add_typer(codelist_app, name="codelist")
    app.add_typer(audit_app, name="audit")
    app.add_typer(webhooks_app, name="webhooks")


_register_remote()


def _settings() -> Any:
    from core.settings import get_settings

    return get_settings()


def _fail(message: str) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


@app.command()
def serve(
    host: str = "127.0.0.1",
    port: Annotated[
        int | None, typer.Option(help="default: PORT or BACKBONE_PORT, else 8000")
    ] = None,
    workers: int = 1,
    proxy_headers: Annotated[
        bool, typer.Option(help="Trust X-Forwarded-* from BACKBONE_FORWARDED_ALLOW_IPS")
    ] = False,
) -> None:
    """Serve the API with uvicorn."""
    import os

    import uvicorn

    from core.keys import MasterKeyError, load_master_key
    from core.settings import get_settings

    settings = _settings()
    if port is None:
        port = int(settings.port)
    elif port != settings.port:
        # The application (in this process or its workers) reads the port from the settings:
        # without BACKBONE_ISSUER, the issuer and the audit log's name follow the port served.
        os.environ["BACKBONE_PORT"] = str(port)
        get_settings.cache_clear()
        settings = _settings()
    try:
        load_master_key(settings)
    except MasterKeyError as exc:
        _fail(f"refusing to start: {exc}")
    from cli.serving import (
        METRICS_VARIABLE,
        metrics_directory,
        reuse_port_supported,
        serve_workers,
    )

    options: dict[str, Any] = {
        "proxy_headers": proxy_headers,
        "forwarded_allow_ips": settings.forwarded_allow_ips or None,
        "access_log": False,
        "server_header": False,  # no Server banner
        "log_config": None,
    }
    typer.echo(f"Backbone listening on http://{host}:{port}  (API docs: http://{host}:{port}/docs)")
    made = None
    if settings.metrics_enabled and (workers > 1 or os.environ.get(METRICS_VARIABLE)):
        # Several workers write their metrics to files that any of them sums at a scrape.
        directory, created = metrics_directory(os.environ)
        made = directory if created else None
    try:
        if workers > 1 and reuse_port_supported():
            raise typer.Exit(serve_workers("api.main:app", host, port, workers, options))
        uvicorn.run("api.main:app", host=host, port=port, workers=workers, **options)
    finally:
        if made is not None:
            import shutil

            shutil.rmtree(made, ignore_errors=True)


@app.command()
def migrate(revision: str = "head") -> None:
    """Upgrade the database schema (Alembic) to REVISION."""
    from migrations.commands import upgrade

    upgrade(_settings().database_url, revision)
    typer.echo(f"database migrated to {revision}")


@app.command()
def downgrade(revision: str) -> None:
    """Downgrade the database schema to REVISION (``base`` drops everything)."""
    from migrations.commands import downgrade as run

    run(_settings().database_url, revision)
    typer.echo(f"database downgraded to {revision}")


@app.command("seed-demo")
def seed_demo() -> None:
    """Seed the demo initiative (once) and write var/demo-credentials.json."""
    from core.keys import load_master_key
    from demo.seed import is_seeded, seed

    settings = _settings()
    path = settings.data_dir / "demo-credentials.json"
    with unit_of_work() as session:
        if is_seeded(session):
            typer.echo(f"demo initiative already seeded; credentials are in {path}")
            return
        typer.echo(
            "seeding the demo initiative (organizations, agreements, synthetic records, indicators)..."
        )
        result = seed(session, load_master_key(settings), path)
    typer.echo(
        f"seeded {sum(result['records'].values())} records; demo client credentials written "
        f"to {path} (with the demo people's sign-in details)"
    )


@app.command()
def demo(
    url: Annotated[
        str | None,
        typer.Option(envvar="BACKBONE_URL", help="the service; default: BACKBONE_ISSUER's URL"),
    ] = None,
    credentials: Path | None = None,
) -> None:
    """Walk through the whole flow against a running service and print what each user sees."""
    from demo.walkthrough import run

    settings = _settings()
    path = credentials or settings.data_dir / "demo-credentials.json"
    if not path.exists():
        _fail(f"{path} not found: start the service with `make run` first")
    sys.exit(run(url or settings.issuer, json.loads(path.read_text())))


@org_app.command("create")
def org_create(
    org_id: str, name: str, kind: Annotated[str, typer.Option(help="partner, backbone or auditor")]
) -> None:
    """Create an organization."""
    from identity import service

    with unit_of_work() as session:
        service.create_organization(session, command_context(), org_id, name, kind)
    typer.echo(f"organization {org_id} created")


@org_app.command("list")
def org_list() -> None:
    from identity import service

    with unit_of_work() as session:
        for org in service.list_organizations(session):
            typer.echo(f"{org.id}\t{org.kind}\t{org.name}")


@client_app.command("create")
def client_create(
    organization: str,
    name: str,
    role: Annotated[
        str | None,
        typer.Option(
            help="partner-system, data-manager, backbone-manager, dashboard, auditor, admin"
        ),
    ] = None,
    scope: Annotated[
        list[str] | None, typer.Option(help="an explicit scope; repeat for more")
    ] = None,
    auth_method: str = "client_secret_basic",
    jwks: Annotated[
        Path | None, typer.Option(help="public JWK set file, for private_key_jwt")
    ] = None,
    client_id: str | None = None,
) -> None:
    """Create a client; its secret is printed once."""
    from identity import service

    with unit_of_work() as session:
        issued = service.create_client(
            session,
            command_context(),
            organization_id=organization,
            name=name,
            role=role,
            scopes=frozenset(scope or []) or None,
            auth_method=auth_method,
            jwks=json.loads(jwks.read_text()) if jwks else None,
            client_id=client_id,
        )
    typer.echo(
        json.dumps(
            {
                "client_id": issued.client.id,
                "client_secret": issued.secret,
                "scopes": sorted(issued.client.scope_set),
            },
            indent=2,
        )
    )


@client_app.command("rotate-secret")
def client_rotate(client_id: str) -> None:
    """Issue a new secret (printed once); the old one stops working."""
    from identity import service

    with unit_of_work() as session:
        issued = service.rotate_secret(session, command_context(), client_id)
    typer.echo(json.dumps({"client_id": client_id, "client_secret": issued.secret}, indent=2))


@client_app.command("register-keys")
def client_keys(client_id: str, jwks: Path) -> None:
    """Register the client's public JWK set (for private_key_jwt)."""
    from identity import service

    with unit_of_work() as session:
        service.register_keys(session, command_context(), client_id, json.loads(jwks.read_text()))
    typer.echo(f"keys registered for {client_id}")


@client_app.command("disable")
def client_disable(client_id: str) -> None:
    """Disable a client; its live tokens stop working at once."""
    from identity import service

    with unit_of_work() as session:
        service.disable_client(session, command_context(), client_id)
    typer.echo(f"client {client_id} disabled")


@user_app.command("create")
def user_create(
    org: Annotated[str, typer.Option("--org", help="the person's organization")],
    role: Annotated[
        str,
        typer.Option(
            "--role", help="data-manager, backbone-manager, auditor, admin, dashboard, ..."
        ),
    ],
    username: Annotated[str, typer.Option("--username", help="what they sign in with")],
    name: Annotated[str | None, typer.Option("--name", help="their name, as pages show it")] = None,
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin",
            help="read the password from the first line of stdin instead of generating one",
        ),
    ] = False,
    oidc: Annotated[
        bool,
        typer.Option(
            "--oidc",
            help="signs in through the organization's identity provider (no password, no TOTP)",
        ),
    ] = False,
    login: Annotated[
        str | None,
        typer.Option(
            "--login",
            help="with --oidc: what the provider's claim says at first sign-in (default: USERNAME)",
        ),
    ] = None,
    subject: Annotated[
        str | None,
        typer.Option("--subject", help="with --oidc: the provider's `sub`, if known already"),
    ] = None,
) -> None:
    """Create a person who signs in to the console. The generated password and the TOTP
    secret (with its otpauth:// URI for an authenticator app) are printed once, never again.
    With --oidc, they sign in through their organization's identity provider instead."""
    from core.keys import load_master_key
    from identity import people

    if oidc:
        if password_stdin:
            _fail(
                "--oidc and --password-stdin: a person who signs in with a provider has no password"
            )
        _user_create_oidc(org, role, username, name, login, subject)
        return
    if login is not None or subject is not None:
        _fail("--login and --subject go with --oidc")
    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else None
    settings = _settings()
    with unit_of_work() as session:
        enrolled = people.create_person(
            session,
            command_context(),
            load_master_key(settings),
            organization_id=org,
            username=username,
            role=role,
            name=name,
            password=password,
        )
        person_id = enrolled.person.id
    shown: dict[str, Any] = {
        "id": person_id,
        "username": username,
        "organization": org,
        "role": role,
        "totp_secret": enrolled.totp_secret,
        "totp_uri": enrolled.provisioning_uri,
    }
    if password is None:
        shown["password"] = enrolled.password
    typer.echo(json.dumps(shown, indent=2))


def _user_create_oidc(
    org: str, role: str, username: str, name: str | None, login: str | None, subject: str | None
) -> None:
    from identity import identity_providers

    with unit_of_work() as session:
        person = identity_providers.create_oidc_person(
            session,
            command_context(),
            organization_id=org,
            username=username,
            role=role,
            name=name,
            login=login,
            subject=subject,
        )
        shown = {
            "id": person.id,
            "username": username,
            "organization": org,
            "role": role,
            "auth": person.auth,
            "login": person.oidc_login,
        }
    typer.echo(json.dumps(shown, indent=2))


@user_app.command("disable")
def user_disable(username: str) -> None:
    """Disable a person: they can no longer sign in, and their sessions end at once."""
    from identity import people

    with unit_of_work() as session:
        people.disable_person(session, command_context(), username)
    typer.echo(f"person {username} disabled")


@idp_app.command("set")
def idp_set(
    organization: str,
    issuer: Annotated[str, typer.Option("--issuer", help="the provider's issuer URL (https)")],
    client_id: Annotated[str, typer.Option("--client-id", help="Backbone's client id there")],
    client_secret_stdin: Annotated[
        bool,
        typer.Option(
            "--client-secret-stdin", help="read the client secret from stdin's first line"
        ),
    ] = False,
    auth_method: Annotated[
        str,
        typer.Option("--auth-method", help="client_secret_basic or client_secret_post"),
    ] = "client_secret_basic",
    scope: Annotated[
        str, typer.Option("--scope", help="the scopes asked for (openid is always among them)")
    ] = "openid profile email",
    claim: Annotated[
        str,
        typer.Option(
            "--claim", help="the ID token claim that names the person: preferred_username or email"
        ),
    ] = "preferred_username",
    allowed_domain: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-domain",
            help="only accounts with a verified email in this domain; repeat for more",
        ),
    ] = None,
) -> None:
    """Set (or replace) ORGANIZATION's identity provider; its people then sign in through it.
    The client secret is sealed under the master key and never shown again."""
    from core.keys import load_master_key
    from identity import identity_providers

    if not client_secret_stdin:
        _fail("give the client secret on stdin with --client-secret-stdin (never as an argument)")
    secret = sys.stdin.readline().rstrip("\r\n")
    settings = _settings()
    with unit_of_work() as session:
        row = identity_providers.set_provider(
            session,
            command_context(),
            load_master_key(settings),
            organization_id=organization,
            issuer=issuer,
            client_id=client_id,
            client_secret=secret,
            token_endpoint_auth_method=auth_method,
            scopes=scope,
            claim=claim,
            allowed_domains=allowed_domain or [],
        )
        shown = identity_providers.describe(row)
    shown["redirect_uri"] = settings.issuer.rstrip("/") + "/sign-in/sso/callback"
    typer.echo(json.dumps(shown, indent=2))


@idp_app.command("show")
def idp_show(organization: str) -> None:
    """ORGANIZATION's identity provider settings (never the client secret)."""
    from identity import identity_providers

    settings = _settings()
    with unit_of_work() as session:
        shown = identity_providers.describe(identity_providers.get_provider(session, organization))
    shown["redirect_uri"] = settings.issuer.rstrip("/") + "/sign-in/sso/callback"
    typer.echo(json.dumps(shown, indent=2))


@idp_app.command("remove")
def idp_remove(organization: str) -> None:
    """Remove ORGANIZATION's identity provider: its people can no longer sign in through it."""
    from identity import identity_providers

    with unit_of_work() as session:
        identity_providers.remove_provider(session, command_context(), organization)
    typer.echo(f"identity provider of {organization} removed")


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Rotate the access-token signing key (the old one stays published until its tokens expire)."""
    from datetime import timedelta

    from core.keys import load_master_key
    from identity import service

    settings = _settings()
    with unit_of_work() as session:
        kid = service.rotate_signing_key(
            session,
            command_context(),
            load_master_key(settings),
            timedelta(seconds=settings.access_token_ttl_seconds),
        )
    typer.echo(f"new signing key {kid}")


if __name__ == "__main__":  # pragma: no cover
    app()
