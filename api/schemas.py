"""Request and response bodies of the public API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Bounds of every integer of the API, so that a huge number is a 422, never a database overflow:
# versions are 32-bit columns; log indices and tree sizes 64-bit ones, kept within the integers a
# JSON client represents exactly (2^53 - 1).
MAX_VERSION = 2**31 - 1
MAX_INDEX = 2**53 - 1
MAX_PAGE = 2**31 - 1


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OrganizationIn(_In):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["partner", "backbone", "auditor"]


class OrganizationOut(BaseModel):
    id: str
    name: str
    kind: str


class ClientIn(_In):
    organization: str
    name: str = Field(min_length=1, max_length=200)
    role: str | None = None
    scopes: list[str] = Field(default_factory=list)
    token_endpoint_auth_method: Literal[
        "client_secret_basic", "client_secret_post", "private_key_jwt"
    ] = "client_secret_basic"
    jwks: dict[str, Any] | None = None
    client_id: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")


class ClientOut(BaseModel):
    client_id: str
    organization: str
    name: str
    role: str
    scopes: list[str]
    token_endpoint_auth_method: str
    disabled: bool
    client_secret: str | None = Field(
        default=None, description="shown once, at creation or rotation"
    )


class JwksIn(_In):
    keys: list[dict[str, Any]]


class ApprovalIn(_In):
    version: int = Field(ge=1, le=MAX_VERSION)
    content_hash: str


class StatusChangeIn(_In):
    reason: str | None = Field(default=None, max_length=500)


class ReleaseIn(_In):
    dimensions: list[str] | None = None
    method: Literal["suppression", "differential_privacy"] | None = None


class ResourceIn(_In):
    datasets: list[str] = Field(default_factory=list, max_length=20)
    agreement: str | None = None
    fields: list[str] | None = Field(default=None, max_length=500)
    dimensions: list[str] | None = Field(default=None, max_length=20)
    geography: str | None = None
    method: str | None = None
    linked_datasets: list[str] = Field(default_factory=list, max_length=20)
    cohort_datasets: list[str] = Field(default_factory=list, max_length=20)


class ContextIn(_In):
    purpose: str | None = None
    recipients: list[str] | None = Field(default=None, max_length=100)


class DecideIn(_In):
    """What would happen if ``client_id`` (by default, the caller) did ``action``."""

    client_id: str | None = None
    action: str
    resource: ResourceIn = Field(default_factory=ResourceIn)
    context: ContextIn = Field(default_factory=ContextIn)
    at: datetime | None = None
    draft: dict[str, Any] | None = Field(
        default=None, description="an agreement document to evaluate as if it were active"
    )
