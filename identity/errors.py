"""Authentication and authorization failures on the resource side (RFC 6750)."""

from __future__ import annotations

from core.errors import DomainError, Forbidden


class AuthenticationFailed(DomainError):
    """No usable access token: missing, malformed, expired, revoked, or of a disabled client."""

    kind = "invalid-token"
    title = "Authentication required"

    def __init__(self, detail: str, *, error: str = "invalid_token") -> None:
        super().__init__(detail)
        self.error = error  # RFC 6750 error code; empty when no token was sent at all


def missing_token() -> AuthenticationFailed:
    """The error of a request that sent no access token at all."""
    return AuthenticationFailed("An access token is required.", error="")


class InsufficientScope(Forbidden):
    kind = "insufficient-scope"
    title = "The access token lacks a required scope"

    def __init__(self, required: frozenset[str]) -> None:
        super().__init__(
            "This request requires the scopes: " + " ".join(sorted(required)),
            extra={"required_scopes": sorted(required)},
        )
        self.required = required
