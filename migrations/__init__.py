"""Alembic migrations: the only way Backbone's schema is created or changed."""
