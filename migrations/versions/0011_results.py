"""results: Results-Based Accountability (results and their indicators, stories behind the
curve and their versions, strategies, partners' roles with commitments, the action plan)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "results",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("population", sa.String(length=300), nullable=False),
        sa.Column("geography", sa.String(length=300), nullable=False),
        sa.Column("public", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"], ["organizations.id"], name=op.f("fk_results_created_by_organizations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_results")),
    )
    op.create_table(
        "result_actions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("result_id", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("owner_organization", sa.String(length=64), nullable=False),
        sa.Column("due", sa.Date(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('planned', 'in_progress', 'done')", name=op.f("ck_result_actions_status")
        ),
        sa.ForeignKeyConstraint(
            ["owner_organization"],
            ["organizations.id"],
            name=op.f("fk_result_actions_owner_organization_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["result_id"], ["results.id"], name=op.f("fk_result_actions_result_id_results")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_result_actions")),
    )
    with op.batch_alter_table("result_actions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_result_actions_result_id"), ["result_id"], unique=False
        )

    op.create_table(
        "result_indicators",
        sa.Column("result_id", sa.String(length=64), nullable=False),
        sa.Column("indicator_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.CheckConstraint(
            "role IN ('primary', 'secondary')", name=op.f("ck_result_indicators_role")
        ),
        sa.ForeignKeyConstraint(
            ["indicator_id"],
            ["indicators.id"],
            name=op.f("fk_result_indicators_indicator_id_indicators"),
        ),
        sa.ForeignKeyConstraint(
            ["result_id"], ["results.id"], name=op.f("fk_result_indicators_result_id_results")
        ),
        sa.PrimaryKeyConstraint("result_id", "indicator_id", name=op.f("pk_result_indicators")),
    )
    with op.batch_alter_table("result_indicators", schema=None) as batch_op:
        batch_op.create_index("ix_result_indicators_indicator", ["indicator_id"], unique=False)

    op.create_table(
        "result_partners",
        sa.Column("result_id", sa.String(length=64), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=1000), nullable=False),
        sa.Column(
            "commitments", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_result_partners_organization_id_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["result_id"], ["results.id"], name=op.f("fk_result_partners_result_id_results")
        ),
        sa.ForeignKeyConstraint(
            ["updated_by"],
            ["organizations.id"],
            name=op.f("fk_result_partners_updated_by_organizations"),
        ),
        sa.PrimaryKeyConstraint("result_id", "organization_id", name=op.f("pk_result_partners")),
    )
    op.create_table(
        "result_strategies",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("result_id", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column(
            "evidence", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column(
            "partners", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["organizations.id"],
            name=op.f("fk_result_strategies_created_by_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["result_id"], ["results.id"], name=op.f("fk_result_strategies_result_id_results")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_result_strategies")),
    )
    with op.batch_alter_table("result_strategies", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_result_strategies_result_id"), ["result_id"], unique=False
        )

    op.create_table(
        "stories",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("result_id", sa.String(length=64), nullable=False),
        sa.Column("indicator_id", sa.String(length=64), nullable=True),
        sa.Column("release_id", sa.String(length=64), nullable=True),
        sa.Column("author_organization", sa.String(length=64), nullable=False),
        sa.Column("author_client", sa.String(length=64), nullable=False),
        sa.Column("audience", sa.String(length=16), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "audience IN ('public', 'initiative')", name=op.f("ck_stories_audience")
        ),
        sa.CheckConstraint(
            "release_id IS NULL OR indicator_id IS NOT NULL",
            name=op.f("ck_stories_release_has_indicator"),
        ),
        sa.ForeignKeyConstraint(
            ["author_organization"],
            ["organizations.id"],
            name=op.f("fk_stories_author_organization_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["indicator_id"], ["indicators.id"], name=op.f("fk_stories_indicator_id_indicators")
        ),
        sa.ForeignKeyConstraint(
            ["release_id"], ["releases.id"], name=op.f("fk_stories_release_id_releases")
        ),
        sa.ForeignKeyConstraint(
            ["result_id"], ["results.id"], name=op.f("fk_stories_result_id_results")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stories")),
    )
    with op.batch_alter_table("stories", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_stories_indicator_id"), ["indicator_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_stories_result_id"), ["result_id"], unique=False)

    op.create_table(
        "story_versions",
        sa.Column("story_id", sa.String(length=40), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("author_organization", sa.String(length=64), nullable=False),
        sa.Column("author_client", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["author_organization"],
            ["organizations.id"],
            name=op.f("fk_story_versions_author_organization_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["story_id"], ["stories.id"], name=op.f("fk_story_versions_story_id_stories")
        ),
        sa.PrimaryKeyConstraint("story_id", "version", name=op.f("pk_story_versions")),
    )


def downgrade() -> None:
    op.drop_table("story_versions")
    with op.batch_alter_table("stories", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_stories_result_id"))
        batch_op.drop_index(batch_op.f("ix_stories_indicator_id"))

    op.drop_table("stories")
    with op.batch_alter_table("result_strategies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_result_strategies_result_id"))

    op.drop_table("result_strategies")
    op.drop_table("result_partners")
    with op.batch_alter_table("result_indicators", schema=None) as batch_op:
        batch_op.drop_index("ix_result_indicators_indicator")

    op.drop_table("result_indicators")
    with op.batch_alter_table("result_actions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_result_actions_result_id"))

    op.drop_table("result_actions")
    op.drop_table("results")
