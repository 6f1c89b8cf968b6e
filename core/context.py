"""What every service call needs to know about the request it serves."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from policy.model import Principal


@dataclass(frozen=True, slots=True)
class RequestContext:
    request_id: str
    now: datetime
    principal: Principal | None = None

    @property
    def organization_id(self) -> str | None:
        return self.principal.organization_id if self.principal else None

    @property
    def client_id(self) -> str | None:
        return self.principal.client_id if self.principal else None
