"""Alembic environment. The URL comes from ``-x url=...``, the config, or BACKBONE_DATABASE_URL."""

from __future__ import annotations

from typing import Any

from alembic import context

from core.db import UTCDateTime, make_engine, normalize_url
from core.settings import Settings
from migrations.schema import include_object, metadata

config = context.config


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Render our column types as plain SQLAlchemy types, so revisions never import app code."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    if (
        type_ == "type"
        and getattr(obj, "_variant_mapping", None)
        and "postgresql" in obj._variant_mapping
    ):
        autogen_context.imports.add("from sqlalchemy.dialects import postgresql")
        return 'sa.JSON().with_variant(postgresql.JSONB(), "postgresql")'
    return False


def _url() -> str:
    x = context.get_x_argument(as_dictionary=True)
    url = x.get("url") or config.get_main_option("sqlalchemy.url") or Settings().database_url
    return normalize_url(url)


def run_offline() -> None:
    context.configure(
        url=_url(), target_metadata=metadata, literal_binds=True, render_as_batch=True
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=True,
            render_item=render_item,
            include_object=include_object,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_url())
    try:
        with engine.connect() as conn:
            context.configure(
                connection=conn,
                target_metadata=metadata,
                render_as_batch=True,
                render_item=render_item,
                include_object=include_object,
            )
            with context.begin_transaction():
                context.run_migrations()
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
