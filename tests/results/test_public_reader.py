"""The public reader (organization ``public``, the scorecard's anonymous principal) sees public
results and their public stories only, values only as the indicator service allows, and never
writes; its reads are audited like anyone's."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from aggregation.reads import ReleaseViews
from agreements.service import PolicyCache
from audit.actions import AuditAction
from audit.models import AuditEvent
from core.context import RequestContext
from core.errors import ConcealedObject, Forbidden
from policy.model import PUBLIC as PUBLIC_ORGANIZATION
from policy.model import PUBLIC_PRINCIPAL, Principal
from policy.vocabulary import OrganizationKind
from results import service
from results.documents import PartnerRoleIn, ResultIn, StoryIn, StoryVersionIn
from results.vocabulary import Audience

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PUBLIC = PUBLIC_PRINCIPAL
MANAGER = Principal(
    "backbone-manager",
    "backbone",
    OrganizationKind.BACKBONE,
    frozenset({"indicators:read", "indicators:write", "results:write"}),
)


def _ctx(principal: Principal) -> RequestContext:
    return RequestContext("req_test", NOW, principal)


@pytest.fixture
def setup(session: Session) -> dict[str, str]:
    manager = _ctx(MANAGER)
    service.create_result(
        session,
        manager,
        ResultIn.model_validate(
            {
                "id": "internal-only",
                "title": "Staff are retained",
                "indicators": [{"indicator": "kindergarten-readiness"}],
            }
        ),
    )
    internal = service.add_story(
        session,
        manager,
        "internal-only",
        StoryIn(title="Internal", body="Only for the initiative.", as_of=date(2026, 2, 1)),
    )
    private_story = service.add_story(
        session,
        manager,
        "kindergarten-ready",
        StoryIn(
            title="Draft thinking",
            body="Not yet for the public.",
            as_of=date(2026, 2, 1),
            audience=Audience.INITIATIVE,
            indicator="kindergarten-readiness",
        ),
    )
    return {"internal": internal.id, "private": private_story.id}


def test_the_public_sees_public_results_and_stories_only(session, setup):
    policy, views, ctx = PolicyCache().get(session), ReleaseViews(), _ctx(PUBLIC)
    listed = service.list_results(session, ctx, policy, views)
    assert {r.id for r in listed} == {"kindergarten-ready", "attend-and-healthy"}

    detail = service.get_result(session, ctx, policy, views, "kindergarten-ready")
    assert detail.stories and all(s.audience == Audience.PUBLIC for s in detail.stories)
    assert setup["private"] not in {s.id for s in detail.stories}
    assert len(detail.strategies) == 3 and len(detail.partners) == 3 and len(detail.actions) == 4
    # The public is told only of the indicators published to it (readiness after pre-K is the
    # district's and the network's); their values are the indicator service's to give.
    assert [i.indicator for i in detail.indicators] == [
        "kindergarten-readiness",
        "kindergarten-enrollment",
    ]
    first = detail.indicators[0]
    assert first.baseline is not None and first.target is not None
    assert first.values_visible and first.points
    initiative = service.get_result(session, _ctx(MANAGER), policy, views, "kindergarten-ready")
    assert "readiness-after-prek" in {i.indicator for i in initiative.indicators}

    with pytest.raises(ConcealedObject):
        service.get_result(session, ctx, policy, views, "internal-only")
    with pytest.raises(ConcealedObject):
        service.get_story(session, ctx, setup["private"])
    with pytest.raises(ConcealedObject):
        service.get_story(session, ctx, setup["internal"])
    stories = service.stories_for_indicator(session, ctx, "kindergarten-readiness")
    assert stories and all(s.audience == Audience.PUBLIC for s in stories)
    assert [
        r.id for r in service.results_for_indicator(session, ctx, "kindergarten-readiness")
    ] == ["kindergarten-ready"]
    public_story = service.get_story(session, ctx, stories[0].id)
    assert public_story.versions

    # The initiative sees them all.
    manager = _ctx(MANAGER)
    assert len(service.list_results(session, manager, policy, views)) == 3
    everything = service.stories_for_indicator(session, manager, "kindergarten-readiness")
    assert setup["private"] in {s.id for s in everything}

    events = session.scalars(
        select(AuditEvent).where(
            AuditEvent.organization_id == PUBLIC_ORGANIZATION,
            AuditEvent.action.in_([AuditAction.RESULT_READ, AuditAction.STORY_READ]),
        )
    ).all()
    assert {(e.action, e.resource_type) for e in events} >= {
        (AuditAction.RESULT_READ, "result"),
        (AuditAction.STORY_READ, "story"),
        (AuditAction.STORY_READ, "indicator_stories"),
        (AuditAction.RESULT_READ, "indicator_results"),
    }
    # The values the public saw were read, and audited, by the indicator service; nothing of
    # an indicator not published to it was read.
    read = session.scalars(
        select(AuditEvent).where(
            AuditEvent.organization_id == PUBLIC_ORGANIZATION,
            AuditEvent.action == AuditAction.RELEASE_READ,
        )
    ).all()
    assert read and {e.resource_id for e in read} <= {
        "kindergarten-readiness",
        "kindergarten-enrollment",
        "chronic-absenteeism",
    }


def test_the_public_never_writes(session, setup):
    ctx = _ctx(PUBLIC)
    with pytest.raises(Forbidden):
        service.create_result(session, ctx, ResultIn(id="x", title="x"))
    with pytest.raises(Forbidden):
        service.add_story(
            session, ctx, "kindergarten-ready", StoryIn(title="t", body="b", as_of=date(2026, 1, 1))
        )
    with pytest.raises(Forbidden):
        service.add_story_version(
            session,
            ctx,
            setup["internal"],
            StoryVersionIn(title="t", body="b", as_of=date(2026, 1, 1)),
        )
    with pytest.raises(Forbidden):
        service.set_partner_role(
            session, ctx, "kindergarten-ready", PUBLIC_ORGANIZATION, PartnerRoleIn(role="r")
        )


def test_the_public_reads_results_over_http_without_a_token(api):
    anonymous = api.client
    listed = anonymous.get("/v1/results")
    assert listed.status_code == 200, listed.text
    assert {r["id"] for r in listed.json()} == {"kindergarten-ready", "attend-and-healthy"}
    for result in listed.json():
        assert "low-birth-weight" not in {i["indicator"] for i in result["indicators"]}
        assert "readiness-after-prek" not in {i["indicator"] for i in result["indicators"]}
    one = anonymous.get("/v1/results/kindergarten-ready")
    assert one.status_code == 200 and one.json()["stories"]
    # what the public may not read is answered as what does not exist: the missing-token 401
    hidden = anonymous.get("/v1/indicators/low-birth-weight/stories")
    unknown = anonymous.get("/v1/results/no-such-result")
    assert hidden.status_code == unknown.status_code == 401
    assert hidden.json()["type"] == unknown.json()["type"]
    # and it never writes
    assert anonymous.post("/v1/results", json={}).status_code == 401
