"""Tables of agreements, their versions, parties, datasets, approvals and status history, and
of the shared code lists agreements refer to."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, ForeignKeyConstraint, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, JSONType, UTCDateTime


class Agreement(Base):
    __tablename__ = "agreements"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    created_by: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    latest_version: Mapped[int] = mapped_column(Integer)


class AgreementVersion(Base):
    __tablename__ = "agreement_versions"

    agreement_id: Mapped[str] = mapped_column(ForeignKey("agreements.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    document: Mapped[dict[str, Any]] = mapped_column(JSONType)
    content_hash: Mapped[str] = mapped_column(String(80))
    # draft | proposed | active | suspended | terminated | superseded
    status: Mapped[str] = mapped_column(String(16), index=True)
    effective_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    end_reason: Mapped[str | None] = mapped_column(Text)
    # The code list versions the document refers to, as they are (``{"<id>@<n>": {...}}``), kept
    # when the version is stored: both are immutable, so compiling the terms needs no lookup.
    codelists: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    def document_parties(self) -> frozenset[str]:
        return frozenset(str(p["org"]) for p in self.document.get("parties", []))


class AgreementParty(Base):
    __tablename__ = "agreement_parties"

    agreement_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))

    __table_args__ = (
        ForeignKeyConstraint(
            ["agreement_id", "version"],
            ["agreement_versions.agreement_id", "agreement_versions.version"],
            name="fk_agreement_parties_version",
        ),
        Index("ix_agreement_parties_organization_id", "organization_id"),
    )


class AgreementDataset(Base):
    __tablename__ = "agreement_datasets"

    agreement_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"))

    __table_args__ = (
        ForeignKeyConstraint(
            ["agreement_id", "version"],
            ["agreement_versions.agreement_id", "agreement_versions.version"],
            name="fk_agreement_datasets_version",
        ),
        Index("ix_agreement_datasets_dataset", "dataset"),
    )


class AgreementApproval(Base):
    __tablename__ = "agreement_approvals"

    agreement_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), primary_key=True)
    # The OAuth client, or the person (``person:<id>``) signed in to the console, who approved.
    client_id: Mapped[str] = mapped_column(String(64))
    content_hash: Mapped[str] = mapped_column(String(80))
    approved_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        ForeignKeyConstraint(
            ["agreement_id", "version"],
            ["agreement_versions.agreement_id", "agreement_versions.version"],
            name="fk_agreement_approvals_version",
        ),
    )


class AgreementStatusChange(Base):
    """Append-only status history: answers which version governed a given moment."""

    __tablename__ = "agreement_status_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    agreement_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    by_organization_id: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        ForeignKeyConstraint(
            ["agreement_id", "version"],
            ["agreement_versions.agreement_id", "agreement_versions.version"],
            name="fk_agreement_status_changes_version",
        ),
        Index("ix_agreement_status_changes_agreement", "agreement_id", "version"),
    )


class CodeList(Base):
    """One version of a shared code list; a new version is a new row, and rows never change."""

    __tablename__ = "code_lists"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str | None] = mapped_column(Text)
    standard: Mapped[str | None] = mapped_column(String(500))
    # geography | period | category
    kind: Mapped[str] = mapped_column(String(16))
    codes: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    code_count: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(ForeignKey("organizations.id"))
