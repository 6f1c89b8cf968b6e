"""Queries over agreements. Services call these; nothing else writes SQL for agreements."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from agreements.models import (
    Agreement,
    AgreementApproval,
    AgreementParty,
    AgreementStatusChange,
    AgreementVersion,
)


def get(session: Session, agreement_id: str) -> Agreement | None:
    return session.get(Agreement, agreement_id)


def get_version(session: Session, agreement_id: str, version: int) -> AgreementVersion | None:
    return session.get(AgreementVersion, (agreement_id, version))


def versions(session: Session, agreement_id: str) -> Sequence[AgreementVersion]:
    return session.scalars(
        select(AgreementVersion)
        .where(AgreementVersion.agreement_id == agreement_id)
        .order_by(AgreementVersion.version)
    ).all()


def current_version(session: Session, agreement_id: str) -> AgreementVersion | None:
    """The latest version that was ever in force: its terms govern the agreement now (an
    amendment continues the agreement), and its status says whether it has ended."""
    activated = [v for v in versions(session, agreement_id) if v.activated_at]
    return max(activated, key=lambda v: v.version) if activated else None


def all_versions(session: Session) -> Sequence[AgreementVersion]:
    return session.scalars(
        select(AgreementVersion).order_by(AgreementVersion.agreement_id, AgreementVersion.version)
    ).all()


def visible_to(session: Session, organization_id: str | None) -> Sequence[Agreement]:
    """Agreements an organization is party to (any version); every agreement when ``None``."""
    query = select(Agreement).order_by(Agreement.id)
    if organization_id is not None:
        party_of = select(AgreementParty.agreement_id).where(
            AgreementParty.organization_id == organization_id
        )
        query = query.where(Agreement.id.in_(party_of))
    return session.scalars(query).all()


def approvals(session: Session, agreement_id: str, version: int) -> Sequence[AgreementApproval]:
    return session.scalars(
        select(AgreementApproval).where(
            AgreementApproval.agreement_id == agreement_id, AgreementApproval.version == version
        )
    ).all()


def policy_generation(session: Session) -> int:
    """Changes whenever any agreement version is created or changes status."""
    return int(session.scalar(select(func.coalesce(func.max(AgreementStatusChange.id), 0))) or 0)


def status_history(session: Session, agreement_id: str) -> Sequence[AgreementStatusChange]:
    return session.scalars(
        select(AgreementStatusChange)
        .where(AgreementStatusChange.agreement_id == agreement_id)
        .order_by(AgreementStatusChange.id)
    ).all()
