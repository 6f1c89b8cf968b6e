"""The events Backbone notifies, and who is told of each.

Event type names are part of the public contract (webhook payloads carry them, agreements name
them in ``notify`` obligations): add a member, never rename one. Payloads never hold record
values or person identifiers; identifiers of submissions, releases and agreements are fine.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from policy.model import AgreementTerms

NOTIFY = "notify"
EVENT_OPERAND = "event"
RECIPIENT_OPERAND = "recipient"


class EventType(StrEnum):
    SUBMISSION_ACCEPTED = "submission.accepted"
    SUBMISSION_REJECTED = "submission.rejected"
    AGREEMENT_AWAITING_APPROVAL = "agreement.awaiting_approval"
    AGREEMENT_EXPIRING = "agreement.expiring"
    AGREEMENT_SUSPENDED = "agreement.suspended"
    AGREEMENT_TERMINATED = "agreement.terminated"
    RECORDS_PURGED = "records.purged"
    BUDGET_THRESHOLD_REACHED = "budget.threshold_reached"
    BUDGET_EXHAUSTED = "budget.exhausted"
    RELEASE_PUBLISHED = "release.published"
    RELEASE_AWAITING_REVIEW = "release.awaiting_review"
    REVIEW_DECIDED = "review.decided"


EVENT_TYPES: frozenset[str] = frozenset(EventType)


@dataclass(frozen=True)
class Audience:
    """Who hears of one event: the parties that may subscribe to it, and the parties a ``notify``
    obligation says must be told (with the obligation's reference), subscribed or not."""

    parties: frozenset[str]
    obligated: dict[str, str] = field(default_factory=dict)  # organization -> agreement/vN/rule


def _values(terms: AgreementTerms, operand: str, rule_constraints: Iterable[object]) -> set[str]:
    out: set[str] = set()
    for c in rule_constraints:
        if getattr(c, "left", None) == operand:
            right = c.right  # type: ignore[attr-defined]
            out |= {str(v) for v in (right if isinstance(right, tuple) else (right,))}
    return out


def audience(
    event: EventType,
    agreements: Iterable[AgreementTerms],
    datasets: Collection[str] = (),
    recipients: Collection[str] | None = None,
) -> Audience:
    """The parties of ``agreements`` (only those in ``recipients`` when it is given), and those
    that a ``notify`` obligation of these agreements names for ``event`` (for an event about
    ``datasets``: an obligation targeting other datasets does not apply)."""
    parties: set[str] = set()
    obligated: dict[str, str] = {}
    for terms in agreements:
        parties |= {org for org, _ in terms.parties}
        for rule in terms.rules:
            if rule.kind != "obligation" or rule.action != NOTIFY:
                continue
            if datasets and "*" not in rule.targets and not (rule.targets & set(datasets)):
                continue
            if event.value not in _values(terms, EVENT_OPERAND, rule.constraints):
                continue
            for org in sorted(_values(terms, RECIPIENT_OPERAND, rule.constraints)):
                obligated.setdefault(org, f"{terms.id}/v{terms.version}/{rule.id}")
    if recipients is not None:
        allowed = set(recipients)
        parties &= allowed
        obligated = {org: ref for org, ref in obligated.items() if org in allowed}
    return Audience(frozenset(parties), obligated)
