"""Fixtures of the console tests: the demo's people, and signing them in."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from identity.people import totp_code


@dataclass(frozen=True)
class DemoPerson:
    username: str
    password: str
    totp_secret: str
    organization: str
    role: str


@pytest.fixture
def demo_people(settings: Any, demo_credentials: Any) -> dict[str, DemoPerson]:
    raw = json.loads((settings.data_dir / "demo-credentials.json").read_text())
    return {
        p["username"]: DemoPerson(
            p["username"], p["password"], p["totp_secret"], p["organization"], p["role"]
        )
        for p in raw["people"]
    }


@pytest.fixture
def auditor(demo_people: dict[str, DemoPerson]) -> DemoPerson:
    return demo_people["avery.auditor"]


@pytest.fixture
def district(demo_people: dict[str, DemoPerson]) -> DemoPerson:
    return demo_people["dana.district"]


def sign_in(
    client: TestClient, clock: Any, person: DemoPerson, *, next_path: str = "", **changes: str
) -> Any:
    """POST the sign-in form with the person's password and current code (the clock moves on a
    time step first: a code signs in once)."""
    clock.advance(seconds=31)
    form = {
        "username": person.username,
        "password": person.password,
        "code": totp_code(person.totp_secret, clock()),
        "next": next_path,
        **changes,
    }
    return client.post("/sign-in", data=form, follow_redirects=False)
