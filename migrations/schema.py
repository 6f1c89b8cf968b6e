"""The whole schema: imports every model module so that ``Base.metadata`` holds every table.

It lives beside the migrations, above every domain package, because it is the one place that
knows all of them (for Alembic's comparison with the models, the tests, and each command-line
entry point); ``core`` stays below the domains."""

from __future__ import annotations

import aggregation.models
import agreements.models
import audit.models
import identity.models
import jobs.models
import notifications.models
import records.models
import results.models
from core.db import Base

metadata = Base.metadata

# Tables the job engine's own schema makes (procrastinate's queue on PostgreSQL, applied by
# revision 0010): they are no model's, so the comparison with the models leaves them out.
ENGINE_TABLE_PREFIX = "procrastinate_"


def include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Alembic's filter for comparing the database with the models (``include_object``)."""
    return not (type_ == "table" and reflected and (name or "").startswith(ENGINE_TABLE_PREFIX))


__all__ = [
    "aggregation",
    "agreements",
    "audit",
    "identity",
    "jobs",
    "metadata",
    "notifications",
    "records",
    "results",
]
