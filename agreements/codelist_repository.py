"""Queries over code lists. The code list service calls these; nothing else writes their SQL."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from agreements.models import CodeList


def get(session: Session, codelist_id: str, version: int) -> CodeList | None:
    return session.get(CodeList, (codelist_id, version))


def latest_version(session: Session, codelist_id: str) -> int | None:
    found = session.scalar(select(func.max(CodeList.version)).where(CodeList.id == codelist_id))
    return int(found) if found is not None else None


def latest(session: Session) -> Sequence[CodeList]:
    """The latest version of every code list, by id."""
    newest = (
        select(CodeList.id, func.max(CodeList.version).label("version"))
        .group_by(CodeList.id)
        .subquery()
    )
    return session.scalars(
        select(CodeList)
        .join(newest, (CodeList.id == newest.c.id) & (CodeList.version == newest.c.version))
        .order_by(CodeList.id)
    ).all()


def versions(session: Session, codelist_id: str) -> Sequence[int]:
    return session.scalars(
        select(CodeList.version).where(CodeList.id == codelist_id).order_by(CodeList.version)
    ).all()
