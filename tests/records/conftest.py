"""Fixtures of the record tests."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from agreements.service import PolicyCache
from core.context import RequestContext
from identity.models import Client, Organization
from policy.model import Principal
from records import service
from records.intake import IntakeLimits
from tests.conftest import MASTER


def context(session: Session, client_id: str, now: Any) -> RequestContext:
    client = session.get(Client, client_id)
    assert client is not None
    org = session.get(Organization, client.organization_id)
    assert org is not None
    return RequestContext(
        "test-" + uuid.uuid4().hex[:8],
        now,
        Principal(client.id, org.id, org.kind, client.scope_set),
    )


@pytest.fixture
def submit_file(session: Session, tmp_path: Path, clock: Any) -> Callable[..., service.Receipt]:
    """Submit a body through the service (no HTTP), in the test's transaction."""
    policies = PolicyCache()

    def submit(
        body: bytes, *, dataset: str = "kindergarten_readiness", as_: str = "district-sis",
        content_type: str = "text/csv", period: str | None = None, replaces: str | None = None,
    ) -> service.Receipt:  # fmt: skip
        path = tmp_path / f"body-{uuid.uuid4().hex}"
        path.write_bytes(body)
        req = service.SubmissionRequest(
            dataset=dataset,
            body=path,
            content_type=content_type,
            content_encoding=None,
            body_sha256=service.sha256_file(path),
            limits=IntakeLimits(max_bytes=1 << 30),
            scratch=tmp_path / f"spill-{uuid.uuid4().hex}",
            period=period,
            replaces=replaces,
        )
        receipt, _ = service.submit(
            session, context(session, as_, clock()), MASTER, policies.get(session), req
        )
        return receipt

    return submit
