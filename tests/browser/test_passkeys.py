"""Passkeys in a real browser: Chromium's virtual authenticator (over the DevTools protocol)
holds the passkey. Sign in with the TOTP code, add a passkey on the account page, sign out, sign
in with the password and the passkey; axe-core with no serious or critical violation on the new
pages.

A WebAuthn relying party id is a host name, never an IP address, so this test serves the app
under an issuer of ``http://localhost:<port>`` (a secure context for Chromium) rather than the
shared live server's ``127.0.0.1``.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from api.app import create_app
from identity.people import totp_code
from tests.browser.conftest import axe_violations, screenshot
from tests.conftest import MASTER

pytestmark = pytest.mark.slow


def _no_violations(page: Any) -> None:
    found = axe_violations(page)
    assert not found, [(v["id"], v["help"], [n["target"] for n in v["nodes"]][:3]) for v in found]


@pytest.fixture
def localhost_url(settings: Any, engine: Any, sessions: Any, clock: Any) -> Iterator[str]:
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    url = f"http://localhost:{port}"
    app = create_app(
        settings.model_copy(update={"issuer": url}),
        engine=engine,
        sessions=sessions,
        master=MASTER,
        clock=clock,
        configure_logs=False,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    yield url
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def passkey_page(browser: Any, localhost_url: str) -> Iterator[Any]:
    context = browser.new_context(base_url=localhost_url, viewport={"width": 1200, "height": 900})
    outside: list[str] = []

    def guard(route: Any) -> None:
        url = route.request.url
        if url.startswith(localhost_url) or url.startswith("data:"):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    context.route("**/*", guard)
    page = context.new_page()
    yield page
    context.close()
    assert not outside, f"the page fetched from elsewhere: {outside}"


def test_add_a_passkey_then_sign_in_with_it(passkey_page: Any, settings: Any, clock: Any) -> None:
    page = passkey_page
    raw = json.loads((settings.data_dir / "demo-credentials.json").read_text())
    dana = next(p for p in raw["people"] if p["username"] == "dana.district")
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable", {"enableUI": False})
    authenticator = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )["authenticatorId"]

    # Signed in with the code, the person adds a passkey on their account page.
    page.goto("/console/account")
    assert page.url.endswith("/sign-in?next=/console/account")
    page.fill("#username", dana["username"])
    page.fill("#password", dana["password"])
    page.fill("#code", totp_code(dana["totp_secret"], clock()))
    page.click("main button[type=submit]")
    page.wait_for_load_state()
    assert page.url.endswith("/console/account"), page.url
    assert page.locator("h1").inner_text() == "Your account"
    assert page.locator("#passkeys").inner_text().count("No passkey yet.") == 1
    assert page.locator("#passkey-needs-js").is_hidden()
    _no_violations(page)
    page.fill("#passkey-name", "This browser")
    page.click("#passkey-add button[type=submit]")
    page.wait_for_url("**/console/account?done=added")
    assert "The passkey is added" in page.locator("#done").inner_text()
    row = page.locator("#passkeys tbody tr").first.inner_text()
    assert "This browser" in row and "never" in row
    _no_violations(page)
    screenshot(page, "console-account-passkeys")
    stored = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]
    assert len(stored) == 1 and stored[0]["rpId"] == "localhost"

    # Signed out, the person signs in with their password, then the passkey.
    page.click("header button[type=submit]")
    page.wait_for_load_state()
    assert page.url.endswith("/sign-in")
    page.goto("/sign-in?next=/console/account")
    page.fill("#username", dana["username"])
    page.fill("#password", dana["password"])
    page.click("main button[type=submit]")
    page.wait_for_load_state()
    assert "/sign-in/second-factor" in page.url, page.url
    assert page.locator("h1").inner_text() == "Your second factor"
    assert page.locator("#passkey-use").is_visible()
    _no_violations(page)
    page.click("#passkey-use")
    try:
        page.wait_for_url(lambda url: url.endswith("/console/account") and "sign-in" not in url)
    except Exception:
        raise AssertionError(page.locator("#passkey-error").inner_text()) from None
    assert page.locator("h1").inner_text() == "Your account"
    row = page.locator("#passkeys tbody tr").first.inner_text()
    assert "This browser" in row and "never" not in row
    stored = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]
    assert stored[0]["signCount"] >= 1

    # The confirmation page of removing it passes axe too.
    page.click("#passkeys a")
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "Remove the passkey This browser?"
    _no_violations(page)
    page.click("#remove-form button[type=submit]")
    page.wait_for_url("**/console/account?done=removed")
    assert "No passkey yet." in page.locator("#passkeys").inner_text()
