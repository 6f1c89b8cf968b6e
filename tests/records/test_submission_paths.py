"""Both ways a body comes in (a stream over HTTP, a file through the service, as the demo and
tools submit) decide in the same order: the client must still be allowed to submit before a
repeated Idempotency-Key returns the original receipt."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from agreements.service import PolicyCache
from core.errors import PolicyDenied
from policy.engine import PolicySet
from records import service
from records.intake import IntakeLimits
from tests.conftest import MASTER
from tests.records.conftest import context

BODY = (
    b"student_id,school_year,neighborhood,race_ethnicity,ready,assessment_score\n"
    b"PA00000001,2025-26,Ashland,Asian,true,50\n"
)


def _request(tmp_path: Path, key: str) -> service.SubmissionRequest:
    path = tmp_path / f"body-{uuid.uuid4().hex}"
    path.write_bytes(BODY)
    return service.SubmissionRequest(
        dataset="kindergarten_readiness",
        body=path,
        content_type="text/csv",
        content_encoding=None,
        body_sha256=service.sha256_file(path),
        limits=IntakeLimits(max_bytes=1 << 20),
        scratch=tmp_path / f"spill-{uuid.uuid4().hex}",
        idempotency_key=key,
    )


def test_a_file_submission_replays_only_for_a_client_still_allowed(
    session: Session, tmp_path: Path, clock: Any
) -> None:
    ctx = context(session, "district-sis", clock())
    policy = PolicyCache().get(session)
    first, created = service.submit(session, ctx, MASTER, policy, _request(tmp_path, "k-paths"))
    assert created
    again, created = service.submit(session, ctx, MASTER, policy, _request(tmp_path, "k-paths"))
    assert not created and again.submission_id == first.submission_id
    # No agreement allows it any more: the key answers nothing.
    with pytest.raises(PolicyDenied):
        service.submit(session, ctx, MASTER, PolicySet([]), _request(tmp_path, "k-paths"))


def test_the_stream_and_the_file_open_a_submission_alike(
    session: Session, tmp_path: Path, clock: Any
) -> None:
    ctx = context(session, "district-sis", clock())
    policy = PolicyCache().get(session)
    first, _ = service.submit(session, ctx, MASTER, policy, _request(tmp_path, "k-open"))
    opening = service.open_submission(
        session,
        ctx,
        MASTER,
        policy,
        "kindergarten_readiness",
        idempotency_key="k-open",
        period=None,
        replaces=None,
    )
    assert opening.previous is not None and opening.previous.id == first.submission_id
    with pytest.raises(PolicyDenied):
        service.open_submission(
            session,
            ctx,
            MASTER,
            PolicySet([]),
            "kindergarten_readiness",
            idempotency_key="k-open",
            period=None,
            replaces=None,
        )
