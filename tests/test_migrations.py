"""The schema is made by the migrations, matches the models, and downgrades cleanly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from core.db import make_engine
from migrations.commands import downgrade, head_revision, upgrade
from migrations.schema import include_object, metadata


def _diff(url: str) -> list:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn, opts={"compare_type": True, "include_object": include_object}
            )
            return compare_metadata(ctx, metadata)
    finally:
        engine.dispose()


def test_upgrade_matches_models_and_downgrade_round_trips(fresh_databases):
    url = fresh_databases.url()
    upgrade(url)
    assert _diff(url) == []
    downgrade(url, "base")
    engine = make_engine(url)
    try:
        tables = set(inspect(engine).get_table_names()) - {"alembic_version"}
        assert tables == set()
    finally:
        engine.dispose()
    upgrade(url)
    assert _diff(url) == []
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            assert (
                conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
                == head_revision()
            )
            assert conn.execute(text("SELECT size FROM audit_head WHERE id = 1")).scalar() == 0
    finally:
        engine.dispose()


def test_0007_keeps_past_withdrawals_and_its_downgrade_lets_pending_ones_take_effect(
    fresh_databases,
):
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import Integer, String, column, table

    from core.db import JSONType, UTCDateTime

    url = fresh_databases.url()
    upgrade(url, "0006")
    then = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    orgs = table(
        "organizations",
        column("id", String),
        column("name", String),
        column("kind", String),
        column("created_at", UTCDateTime()),
    )
    clients = table(
        "clients",
        column("id", String),
        column("organization_id", String),
        column("name", String),
        column("role", String),
        column("scopes", String),
        column("token_endpoint_auth_method", String),
        column("created_at", UTCDateTime()),
    )
    base = [
        ("id", String),
        ("dataset", String),
        ("agreement_id", String),
        ("agreement_version", Integer),
        ("organization_id", String),
        ("client_id", String),
        ("status", String),
        ("row_count", Integer),
        ("body_sha256", String),
        ("content_type", String),
        ("columns", JSONType),
        ("received_at", UTCDateTime()),
        ("withdrawn_at", UTCDateTime()),
    ]
    pending = [
        ("withdrawal_requested_at", UTCDateTime()),
        ("withdrawal_effective_at", UTCDateTime()),
    ]
    old_subs = table("submissions", *(column(n, k) for n, k in base))
    new_subs = table("submissions", *(column(n, k) for n, k in base + pending))

    def row(sid: str, status: str, withdrawn: datetime | None) -> dict:
        return {
            "id": sid, "dataset": "survey", "agreement_id": "a", "agreement_version": 1,
            "organization_id": "o", "client_id": "c", "status": status, "row_count": 1,
            "body_sha256": "0" * 64, "content_type": "text/csv", "columns": [],
            "received_at": then, "withdrawn_at": withdrawn,
        }  # fmt: skip

    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                orgs.insert(), [{"id": "o", "name": "O", "kind": "partner", "created_at": then}]
            )
            conn.execute(
                clients.insert(),
                [{"id": "c", "organization_id": "o", "name": "C", "role": "partner-system",
                  "scopes": "", "token_endpoint_auth_method": "client_secret_basic",
                  "created_at": then}],
            )  # fmt: skip
            conn.execute(
                old_subs.insert(),
                [row("gone", "withdrawn", then + timedelta(days=1)), row("kept", "accepted", None)],
            )
        upgrade(url, "0007")
        with engine.begin() as conn:
            got = {
                r.id: (r.status, r.withdrawal_requested_at, r.withdrawal_effective_at)
                for r in conn.execute(new_subs.select())
            }
            assert got == {
                "gone": ("withdrawn", then + timedelta(days=1), then + timedelta(days=1)),
                "kept": ("accepted", None, None),
            }
            # A withdrawal scheduled under 0007, pending when the schema goes back to 0006.
            conn.execute(
                new_subs.update()
                .where(new_subs.c.id == "kept")
                .values(
                    withdrawal_requested_at=then, withdrawal_effective_at=then + timedelta(days=30)
                )
            )
        downgrade(url, "0006")
        with engine.begin() as conn:
            got = {
                r.id: (r.status, r.withdrawn_at is not None)
                for r in conn.execute(old_subs.select())
            }
            assert got == {"gone": ("withdrawn", True), "kept": ("withdrawn", True)}
    finally:
        engine.dispose()


def test_0015_keeps_code_lists_and_refuses_to_drop_what_an_agreement_version_refers_to(
    fresh_databases,
):
    from datetime import UTC, datetime

    import pytest
    from sqlalchemy import Integer, String, column, inspect, table

    from core.db import JSONType, UTCDateTime

    url = fresh_databases.url()
    upgrade(url, "0015")
    then = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    orgs = table(
        "organizations",
        column("id", String),
        column("name", String),
        column("kind", String),
        column("created_at", UTCDateTime()),
    )
    lists = table(
        "code_lists",
        *(column(n) for n in ("id", "version", "title", "kind", "code_count", "content_hash")),
        column("codes", JSONType),
        column("created_at", UTCDateTime()),
        column("created_by", String),
    )
    agreements = table(
        "agreements",
        *(column(n) for n in ("id", "title", "created_by", "latest_version")),
        column("created_at", UTCDateTime()),
    )
    versions = table(
        "agreement_versions",
        column("agreement_id", String),
        column("version", Integer),
        column("content_hash", String),
        column("status", String),
        column("document", JSONType),
        column("codelists", JSONType),
        *(column(n, UTCDateTime()) for n in ("effective_at", "expires_at", "created_at")),
    )
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                orgs.insert(), [{"id": "b", "name": "B", "kind": "backbone", "created_at": then}]
            )
            conn.execute(
                lists.insert(),
                [{"id": "wards", "version": 1, "title": "Wards", "kind": "geography",
                  "code_count": 1, "content_hash": "sha256:x", "codes": [{"code": "W1"}],
                  "created_at": then, "created_by": "b"}],
            )  # fmt: skip
            conn.execute(
                agreements.insert(),
                [
                    {
                        "id": "a",
                        "title": "A",
                        "created_by": "b",
                        "latest_version": 1,
                        "created_at": then,
                    }
                ],
            )
            conn.execute(
                versions.insert(),
                [{"agreement_id": "a", "version": 1, "content_hash": "sha256:y", "status": "draft",
                  "document": {}, "codelists": {"wards@1": {"title": "Wards", "kind": "geography",
                  "codes": ["W1"]}}, "effective_at": then, "expires_at": then, "created_at": then}],
            )  # fmt: skip
        with pytest.raises(RuntimeError, match="refer to code lists"):
            downgrade(url, "0014")
        with engine.begin() as conn:
            conn.execute(text("UPDATE agreement_versions SET codelists = NULL"))
        downgrade(url, "0014")
        inspector = inspect(engine)
        assert "code_lists" not in inspector.get_table_names()
        assert "codelists" not in {c["name"] for c in inspector.get_columns("agreement_versions")}
    finally:
        engine.dispose()
