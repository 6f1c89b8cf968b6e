"""The whole schema: imports every model module so that ``Base.metadata`` holds every table.

It lives beside the migrations, above every domain package, because it is the one place that
knows all of them (for Alembic's comparison with the models, the tests, and each command-line
entry point); ``core`` stays below the domains."""

from __future__ import annotations

import aggregation.models
import agreements.models
import audit.models
import identity.models
import notifications.models
import records.models
from core.db import Base

metadata = Base.metadata

__all__ = ["aggregation", "agreements", "audit", "identity", "metadata", "notifications", "records"]
