"""identity providers: an organization's OpenID Connect provider (its client secret sealed), and
people who sign in through it (no password or TOTP secret; the provider's ``sub`` pinned)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "identity_providers",
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("issuer", sa.String(length=500), nullable=False),
        sa.Column("client_id", sa.String(length=255), nullable=False),
        sa.Column("client_secret_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("token_endpoint_auth_method", sa.String(length=32), nullable=False),
        sa.Column("scopes", sa.String(length=500), nullable=False),
        sa.Column("claim", sa.String(length=64), nullable=False),
        sa.Column("allowed_domains", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_identity_providers_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("organization_id", name=op.f("pk_identity_providers")),
    )
    with op.batch_alter_table("people", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("auth", sa.String(length=8), server_default="local", nullable=False)
        )
        batch_op.add_column(sa.Column("oidc_login", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("oidc_subject", sa.String(length=255), nullable=True))
        batch_op.alter_column("password_hash", existing_type=sa.String(length=255), nullable=True)
        batch_op.alter_column("totp_sealed", existing_type=sa.LargeBinary(), nullable=True)
        batch_op.create_unique_constraint(
            batch_op.f("uq_people_organization_id_oidc_subject"),
            ["organization_id", "oidc_subject"],
        )


def downgrade() -> None:
    # A person who signs in through a provider has no password to fall back on: they are not
    # deleted (with their sessions and their name in the log) behind anyone's back.
    count = op.get_bind().scalar(sa.text("SELECT count(*) FROM people WHERE auth <> 'local'"))
    if count:
        raise RuntimeError(
            f"{count} people sign in through an identity provider; remove them before downgrading."
        )
    with op.batch_alter_table("people", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("uq_people_organization_id_oidc_subject"), type_="unique"
        )
        batch_op.alter_column("totp_sealed", existing_type=sa.LargeBinary(), nullable=False)
        batch_op.alter_column("password_hash", existing_type=sa.String(length=255), nullable=False)
        batch_op.drop_column("oidc_subject")
        batch_op.drop_column("oidc_login")
        batch_op.drop_column("auth")
    op.drop_table("identity_providers")
