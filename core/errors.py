"""Domain errors. They carry a stable kind and a human message, never an HTTP status.

``api/errors.py`` maps each kind to a status and an RFC 9457 problem type in one place. Messages
must never contain record values or direct identifiers: they are shown to callers and logged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policy.explain import decision_document
from policy.model import Decision


class DomainError(Exception):
    """Base of every error a caller can cause. ``kind`` is stable and documented."""

    kind: str = "domain-error"
    title: str = "Request could not be completed"

    def __init__(self, detail: str, *, extra: Mapping[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra: dict[str, Any] = dict(extra or {})


class NotFound(DomainError):
    kind = "not-found"
    title = "Resource not found"


class Conflict(DomainError):
    kind = "conflict"
    title = "Conflict with the current state of the resource"


class InvalidInput(DomainError):
    kind = "invalid-input"
    title = "The request content is invalid"


class Forbidden(DomainError):
    kind = "forbidden"
    title = "Not allowed"


class ObjectAccessDenied(Forbidden):
    """The caller is authenticated and scoped, but the object is not theirs to see."""

    kind = "object-access-denied"
    title = "Not allowed on this object"


class ConcealedObject(NotFound):
    """Another organization's object, answered exactly as one that does not exist (so an id
    says nothing of what it names), but audited as the denial it is."""


class PolicyDenied(Forbidden):
    """A policy decision denied the request; the decision and its reasons travel with it."""

    kind = "policy-denied"
    title = "Denied by the governing data-sharing agreements"

    def __init__(self, detail: str, *, decision: Decision | None = None) -> None:
        super().__init__(
            detail, extra={"decision": decision_document(decision)} if decision else None
        )
        self.decision = decision


class PayloadTooLarge(DomainError):
    kind = "payload-too-large"
    title = "Request body too large"


class UnsupportedMediaType(DomainError):
    kind = "unsupported-media-type"
    title = "Unsupported media type"
