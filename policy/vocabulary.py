"""The closed, versioned vocabulary that agreements and the engine share.

Like an ODRL 2.2 profile, it closes the set of actions, constraint operands and operators so that
an agreement can be checked mechanically: a term that is not listed here is a lint error, never
silently ignored. Purposes are rooted in the W3C Data Privacy Vocabulary (DPV).

It is also the one source of the closed sets of values that agreements, indicator definitions,
the API and the disclosure-control engine share (disclosure methods, rounding schemes, field
types and roles, organization kinds) and of the steward rule. Pydantic models use these enums as
field types, so their JSON Schema is derived from here; a test keeps copies from coming back.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

VERSION: Final = "backbone-odrl/1"

# Actions a rule can govern, with the ODRL action each refines.
ACTIONS: Final[dict[str, str]] = {
    "submit": "odrl:transfer",  # push record-level data into the service
    "compute": "odrl:aggregate",  # use record-level data to compute aggregates
    "publish": "odrl:distribute",  # release aggregates to recipients
    "link": "odrl:use",  # join with other datasets through linkage tokens
    "read": "odrl:read",  # read the agreement or a release as a recipient
    "export_records": "odrl:distribute",  # record-level export (never permitted by Backbone)
    "redisclose": "odrl:distribute",  # onward disclosure by a recipient
    "delete": "odrl:delete",  # a duty: destroy the data (after the term and its grace period)
    "notify": "odrl:inform",  # a duty: inform a party (for example of a publication, for review)
}

# Purposes: DPV terms, plus Backbone refinements whose broader DPV term is given.
PURPOSES: Final[dict[str, str | None]] = {
    "dpv:PublicBenefit": None,
    "dpv:ServiceProvision": None,
    "dpv:ImproveExistingProductsAndServices": None,
    "dpv:ResearchAndDevelopment": None,
    "dpv:NonCommercialResearch": "dpv:ResearchAndDevelopment",
    "dpv:AcademicResearch": "dpv:ResearchAndDevelopment",
    "dpv:OrganisationGovernance": None,
    "dpv:LegalCompliance": None,
    "bb:OfficialStatistics": "dpv:PublicBenefit",
    "bb:ProgramEvaluation": "dpv:ImproveExistingProductsAndServices",
    "bb:ImprovePublicServices": "dpv:ImproveExistingProductsAndServices",
    "bb:CommunityIndicators": "dpv:PublicBenefit",
    # Comparing a program's performance measures with peer organizations' programs, so that
    # partners learn from each other's results without seeing each other's records. A sibling
    # of program evaluation, not a refinement of it: a permission to evaluate a program is not
    # a permission to show its results to the program's peers.
    "bb:PeerLearning": "dpv:ImproveExistingProductsAndServices",
}
# The purpose a performance measure shared beyond its own organization must state.
PEER_LEARNING: Final = "bb:PeerLearning"

LEGAL_BASES: Final[dict[str, str]] = {
    "ferpa-studies": "FERPA studies exception, 34 CFR 99.31(a)(6)",
    "ferpa-audit-evaluation": "FERPA audit or evaluation exception, 34 CFR 99.31(a)(3)",
    "hipaa-limited-data-set": "HIPAA limited data set with a data use agreement, 45 CFR 164.514(e)",
    "hipaa-public-health": "HIPAA public health activities, 45 CFR 164.512(b)",
    "state-statute": "a state statute authorizing the disclosure",
    "consent": "written consent of the data subjects or their parents",
    "public-task": "a task carried out in the public interest by a public body",
}

# Clauses a legal basis requires an agreement to state (lint checks them).
MANDATORY_CLAUSES: Final[dict[str, tuple[str, ...]]] = {
    "ferpa-studies": ("purpose", "scope", "duration", "data_disclosed", "destruction"),
    "ferpa-audit-evaluation": ("purpose", "scope", "duration", "data_disclosed", "destruction"),
    "hipaa-limited-data-set": ("purpose", "recipients", "no_reidentification", "destruction"),
    "hipaa-public-health": ("purpose", "destruction"),
    "state-statute": ("purpose", "duration"),
    "consent": ("purpose", "duration"),
    "public-task": ("purpose",),
}

# Geographic levels from finest to coarsest; a rule's finest level allows itself and coarser.
GEOGRAPHY_LEVELS: Final[tuple[str, ...]] = (
    "address",
    "block",
    "block_group",
    "tract",
    "neighborhood",
    "zip",
    "school_district",
    "city",
    "county",
    "state",
)
GEOGRAPHY_RANK: Final[dict[str, int]] = {level: i for i, level in enumerate(GEOGRAPHY_LEVELS)}


class DisclosureMethod(StrEnum):
    """How a release protects the people it counts."""

    SUPPRESSION = "suppression"
    DIFFERENTIAL_PRIVACY = "differential_privacy"


class RoundingScheme(StrEnum):
    """How published counts are rounded (see :mod:`disclosure.rounding`), least strict first."""

    NONE = "none"
    BASE5 = "base5"
    MIDPOINT6 = "midpoint6"


# Strictness of each rounding scheme: across agreements, the strictest one applies.
ROUNDING_STRICTNESS: Final[dict[str, int]] = {s: i for i, s in enumerate(RoundingScheme)}

# leftOperand -> (value kind, ODRL operand it refines)
LEFT_OPERANDS: Final[dict[str, tuple[str, str]]] = {
    "purpose": ("term", "odrl:purpose"),
    "recipient": ("set", "odrl:recipient"),
    "dimension": ("set", "bb:dimension"),
    "field": ("set", "bb:field"),
    "spatialGranularity": ("geography", "odrl:spatial"),
    "disclosureMethod": ("term", "bb:disclosureMethod"),
    "dateTime": ("datetime", "odrl:dateTime"),
    "linkedDataset": ("set", "bb:linkedDataset"),
    # The events a notify obligation covers (the event types of notifications.events).
    "event": ("set", "bb:event"),
}

OPERATORS: Final[dict[str, str]] = {
    "eq": "odrl:eq",
    "neq": "odrl:neq",
    "lt": "odrl:lt",
    "lteq": "odrl:lteq",
    "gt": "odrl:gt",
    "gteq": "odrl:gteq",
    "isAnyOf": "odrl:isAnyOf",
    "isAllOf": "odrl:isAllOf",
    "isNoneOf": "odrl:isNoneOf",
    "isPartOf": "odrl:isPartOf",
}


class FieldRole(StrEnum):
    """The role of a dataset field (Frictionless Table Schema, refined)."""

    IDENTIFIER = "identifier"
    DIMENSION = "dimension"
    MEASURE = "measure"
    ATTRIBUTE = "attribute"


class FieldType(StrEnum):
    """The type of a dataset field (Frictionless Table Schema types Backbone accepts)."""

    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATE = "date"
    YEAR = "year"


class OrganizationKind(StrEnum):
    PARTNER = "partner"  # a data provider or recipient
    BACKBONE = "backbone"  # the backbone organization that runs the service
    AUDITOR = "auditor"  # an oversight body that reads the audit log


STEWARD_KINDS: Final = frozenset({OrganizationKind.BACKBONE, OrganizationKind.AUDITOR})


def is_steward(organization_kind: str) -> bool:
    """The steward rule: the backbone and auditors may see every agreement and budget, not only
    those their organization is party to."""
    return organization_kind in STEWARD_KINDS
