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


class SignInFailed(DomainError):
    """A sign-in that did not succeed. One message whatever was wrong (the username, the password
    or the code): which one it was would tell a stranger which usernames exist."""

    kind = "sign-in-failed"
    title = "Sign-in failed"

    def __init__(self) -> None:
        super().__init__("Wrong username, password or code.")


class CsrfRefused(Forbidden):
    """A state-changing form of a signed-in session came without its session's CSRF token."""

    kind = "csrf-refused"
    title = "The form is not from this session"

    def __init__(self) -> None:
        super().__init__(
            "This form was not sent from your current session (it may be an old page, or "
            "another site's). Reload the page and try again."
        )
