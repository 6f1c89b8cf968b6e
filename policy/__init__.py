"""The policy engine: a pure function from (principal, action, resource, context, agreements, now)
to a :class:`~policy.model.Decision` that explains itself.

Nothing in this package reads a database, the clock, the network or a web framework; a test
enforces it. Callers pass ``now`` and the compiled agreement terms in.
"""

from policy.engine import decide
from policy.model import (
    Action,
    AgreementTerms,
    Constraint,
    Context,
    DatasetTerms,
    Decision,
    Disclosure,
    Effect,
    FailedConstraint,
    FieldTerms,
    Obligations,
    Principal,
    Resource,
    Rule,
    RuleRef,
)

__all__ = [
    "Action",
    "AgreementTerms",
    "Constraint",
    "Context",
    "DatasetTerms",
    "Decision",
    "Disclosure",
    "Effect",
    "FailedConstraint",
    "FieldTerms",
    "Obligations",
    "Principal",
    "Resource",
    "Rule",
    "RuleRef",
    "decide",
]
