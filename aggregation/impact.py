"""Which indicators a change of agreements would break (for what-if questions)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from aggregation.definitions import list_definitions, publish_decision
from aggregation.models import Indicator
from identity.models import Organization
from policy.engine import PolicySet
from policy.explain import decision_document
from policy.model import Principal
from policy.vocabulary import OrganizationKind


def breaking_indicators(
    session: Session, current: PolicySet, proposed: PolicySet, now: datetime
) -> list[dict[str, Any]]:
    """Indicators that may be published under ``current`` but would be refused under
    ``proposed``, each with the decision that would refuse it."""
    broken: list[dict[str, Any]] = []
    for version, definition in list_definitions(session):
        indicator = session.get(Indicator, version.indicator_id)
        if indicator is None:  # pragma: no cover - the version's indicator always exists
            continue
        org = session.get(Organization, indicator.created_by)
        owner = Principal(
            "(indicator owner)",
            indicator.created_by,
            org.kind if org else OrganizationKind.BACKBONE.value,
        )
        dims, method = definition.dimensions, definition.method
        before = publish_decision(owner, current, definition, dims, method, now)
        after = publish_decision(owner, proposed, definition, dims, method, now)
        if before.permitted and not after.permitted:
            broken.append(
                {
                    "indicator": definition.id,
                    "version": version.version,
                    "decision": decision_document(after),
                }
            )
    return broken
