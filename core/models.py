"""Imports every model module so that ``Base.metadata`` holds the whole schema."""

from __future__ import annotations

import aggregation.models
import agreements.models
import audit.models
import identity.models
import records.models
from core.db import Base

metadata = Base.metadata

__all__ = ["aggregation", "agreements", "audit", "identity", "metadata", "records"]
