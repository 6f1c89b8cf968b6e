"""The scopes of the public contract, and which kinds of organization may hold which."""

from __future__ import annotations

from policy.vocabulary import OrganizationKind

SCOPES: dict[str, str] = {
    "records:write": "push record-level submissions for datasets the organization provides",
    "submissions:read": "read the organization's own submission receipts",
    "agreements:read": "read agreements the organization is party to",
    "agreements:write": "draft and amend agreements",
    "agreements:approve": "approve, suspend or terminate agreements for the organization",
    "indicators:write": "define indicators and request releases",
    "indicators:read": "read published indicator releases and series",
    "results:write": "write results, stories behind the curve and commitments",
    "audit:read": "read and verify the access log",
    "admin": "manage organizations, clients and keys",
}

# What each kind of organization may be granted; a client's scopes are a subset of these.
ALLOWED_BY_KIND: dict[str, frozenset[str]] = {
    OrganizationKind.PARTNER: frozenset(
        {
            "records:write",
            "submissions:read",
            "agreements:read",
            "agreements:write",
            "agreements:approve",
            "indicators:read",
            "results:write",
        }
    ),
    OrganizationKind.BACKBONE: frozenset(
        {
            "agreements:read",
            "agreements:write",
            "agreements:approve",
            "indicators:write",
            "indicators:read",
            "results:write",
            "submissions:read",
            "admin",
        }
    ),
    OrganizationKind.AUDITOR: frozenset({"audit:read", "agreements:read", "indicators:read"}),
}

# Named bundles for the roles of the design; a client may also be given explicit scopes.
ROLES: dict[str, tuple[str, frozenset[str]]] = {
    "partner-system": (OrganizationKind.PARTNER, frozenset({"records:write", "submissions:read"})),
    # People of a partner who send its data from the console: the partner system's scopes, as a
    # role of its own so that a system (a client) and a person are never the same role.
    "partner-staff": (OrganizationKind.PARTNER, frozenset({"records:write", "submissions:read"})),
    "data-manager": (
        OrganizationKind.PARTNER,
        frozenset(
            {
                "agreements:read",
                "agreements:write",
                "agreements:approve",
                "submissions:read",
                "results:write",
            }
        ),
    ),
    "backbone-manager": (
        OrganizationKind.BACKBONE,
        frozenset(
            {
                "agreements:read",
                "agreements:write",
                "agreements:approve",
                "indicators:write",
                "indicators:read",
                "results:write",
            }
        ),
    ),
    "dashboard": ("*", frozenset({"indicators:read"})),
    "auditor": (OrganizationKind.AUDITOR, frozenset({"audit:read", "agreements:read"})),
    "admin": (OrganizationKind.BACKBONE, frozenset({"admin"})),
}

ORGANIZATION_KINDS = frozenset(OrganizationKind)


def parse_scope(text: str | None) -> frozenset[str]:
    return frozenset((text or "").split())
