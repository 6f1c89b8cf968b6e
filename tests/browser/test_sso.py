"""Single sign-on in a real browser: a person of the district picks their organization on the
sign-in page, signs in at the district's (fake) OpenID provider, a real server on its own port,
and comes back signed in to the page they asked for. The service reaches the provider over the
network, as in production (no test transport)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from api.app import create_app
from core.context import RequestContext
from identity import identity_providers
from tests.browser.conftest import axe_violations
from tests.conftest import MASTER
from tests.console.oidc_provider import FakeProvider

pytestmark = pytest.mark.slow
ACCOUNT = {"sub": "district-0001", "preferred_username": "pat.sso"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """An ASGI app served by uvicorn on ``port``, in a thread."""

    def __init__(self, app: Any, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def provider_app(idp: FakeProvider) -> Starlette:
    """The fake provider over HTTP: its sign-in page has one button, for ``ACCOUNT``."""

    async def authorize(request: Request) -> Response:
        if request.method == "GET":
            return HTMLResponse(
                '<!doctype html><html lang="en"><title>District sign-in</title>'
                '<form method="post"><button id="approve">Sign in as Pat</button></form></html>'
            )
        location = str(request.url).replace(str(request.base_url).rstrip("/"), idp.issuer, 1)
        back = urlsplit(dict(request.query_params)["redirect_uri"])
        path = idp.authorize(location, ACCOUNT)
        return RedirectResponse(f"{back.scheme}://{back.netloc}{path}", status_code=303)

    async def endpoint(request: Request) -> Response:
        forwarded = httpx.Request(
            request.method,
            str(request.url),
            headers=dict(request.headers),
            content=await request.body(),
        )
        answer = idp.handle(forwarded)
        return Response(answer.content, answer.status_code, headers=dict(answer.headers))

    return Starlette(
        routes=[
            Route("/authorize", authorize, methods=["GET", "POST"]),
            Route("/.well-known/openid-configuration", endpoint),
            Route("/jwks", endpoint),
            Route("/token", endpoint, methods=["POST"]),
        ]
    )


@pytest.fixture
def servers(settings, engine, sessions, clock, session) -> Iterator[tuple[Served, Served]]:
    idp_port, app_port = _free_port(), _free_port()
    idp = FakeProvider(f"http://127.0.0.1:{idp_port}", clock)
    ctx = RequestContext("test", clock())
    identity_providers.set_provider(
        session,
        ctx,
        MASTER,
        organization_id="district",
        issuer=idp.issuer,
        client_id=idp.client_id,
        client_secret=idp.client_secret,
    )
    identity_providers.create_oidc_person(
        session, ctx, organization_id="district", username="pat.sso", role="data-manager"
    )
    session.commit()
    app = create_app(
        settings.model_copy(update={"issuer": f"http://127.0.0.1:{app_port}"}),
        engine=engine,
        sessions=sessions,
        master=MASTER,
        clock=clock,
        configure_logs=False,
    )
    with Served(provider_app(idp), idp_port) as provider, Served(app, app_port) as service:
        yield provider, service


def test_a_person_signs_in_through_their_organizations_provider(browser, servers) -> None:
    provider, service = servers
    context = browser.new_context(base_url=service.url)
    outside: list[str] = []

    def guard(route: Any) -> None:
        url = route.request.url
        if url.startswith((service.url, provider.url, "data:")):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    context.route("**/*", guard)
    page = context.new_page()
    try:
        page.goto("/console/agreements")
        assert "/sign-in?next=" in page.url
        found = axe_violations(page)
        assert not found, [(v["id"], v["help"]) for v in found]
        page.click("text=Riverton Unified School District")
        page.wait_for_url(provider.url + "/authorize?**")
        page.click("#approve")
        page.wait_for_url(service.url + "/console/agreements")
        assert "pat.sso" in page.locator("header.site").inner_text()
        cookies = {c["name"]: c for c in context.cookies()}
        assert cookies["backbone_session"]["httpOnly"]
        assert cookies["backbone_session"]["sameSite"] == "Lax"
        assert "backbone_sso" not in cookies
        # Signing out ends the session, as for a local sign-in.
        page.click("header.site button[type=submit]")
        page.wait_for_url(service.url + "/sign-in")
        page.goto("/console")
        assert "/sign-in" in page.url
    finally:
        context.close()
    assert not outside, outside
