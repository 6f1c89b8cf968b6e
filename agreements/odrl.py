"""Export an agreement version as an ODRL 2.2 Agreement in JSON-LD.

The JSON-LD context is shipped in this package (``odrl_context.json``) and embedded in every
export, so a consumer never needs to fetch anything to interpret it. Backbone's actions and
operands form an ODRL profile (``urn:backbone:profile:odrl:v1``): each action is included in the
ODRL action named in :data:`policy.vocabulary.ACTIONS`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from typing import Any

from agreements.codelists import ResolvedCodeList
from agreements.compile import publication_review
from agreements.document import AgreementDocument, ConstraintSpec, PrivacySpec, RuleSpec, Term
from policy import vocabulary as vocab
from policy.model import PUBLIC

PROFILE = "urn:backbone:profile:odrl:v1"
# The public as a party (the bb: prefix is the profile's vocabulary, in the shipped context).
PUBLIC_PARTY = "bb:Public"


@lru_cache(maxsize=1)
def context() -> dict[str, Any]:
    """The shipped JSON-LD context (a copy; callers may not mutate it)."""
    text = (resources.files("agreements") / "odrl_context.json").read_text()
    data: dict[str, Any] = json.loads(text)["@context"]
    return data


def org_iri(org: str) -> str:
    return f"urn:backbone:org:{org}"


def recipient_iri(recipient: str) -> str:
    """A recipient's IRI: an organization's, or for the reserved ``public`` the party that is
    everyone (``bb:Public``), never an organization."""
    return PUBLIC_PARTY if recipient == PUBLIC else org_iri(recipient)


def dataset_iri(name: str) -> str:
    return f"urn:backbone:dataset:{name}"


def _constraint(c: ConstraintSpec) -> dict[str, Any]:
    right: Any = c.right_operand
    if c.left_operand == "recipient":
        right = [recipient_iri(v) for v in (right if isinstance(right, list) else [right])]
        right = [{"@id": v} for v in right]
    elif c.left_operand == "purpose":
        values = right if isinstance(right, list) else [right]
        right = [{"@id": v} for v in values]
    elif hasattr(right, "isoformat"):
        right = {"@value": right.isoformat(), "@type": "xsd:dateTime"}
    return {"leftOperand": c.left_operand, "operator": c.operator, "rightOperand": right}


def _rule(rule: RuleSpec, uid: str, assigner: list[str]) -> dict[str, Any]:
    targets = [t for t in rule.targets() if t != "*"]
    assignees = [a for a in rule.assignees() if a != "*"]
    out: dict[str, Any] = {
        "uid": f"{uid}:rule:{rule.id}",
        "action": rule.action,
        "target": [dataset_iri(t) for t in targets] if targets else [f"{uid}:all-datasets"],
        "assigner": [org_iri(a) for a in assigner],
    }
    if assignees:
        out["assignee"] = [org_iri(a) for a in assignees]
    if rule.constraint:
        out["constraint"] = [_constraint(c) for c in rule.constraint]
    if rule.description:
        out["description"] = rule.description
    return out


def _privacy_constraints(privacy: PrivacySpec | None) -> list[dict[str, Any]]:
    """The privacy budget as constraints of the disclosure-control duty: what one release may
    spend, what a period's budget holds, and the share of it one release may take."""
    if privacy is None:
        return []
    out: list[dict[str, Any]] = [
        {
            "leftOperand": "epsilonPerRelease",
            "operator": "lteq",
            "rightOperand": privacy.epsilon_per_release,
        },
        {
            "leftOperand": "epsilonPerPeriod",
            "operator": "lteq",
            "rightOperand": privacy.epsilon_per_period,
            "unit": f"bb:{privacy.period}",
        },
    ]
    if privacy.max_share_per_release is not None:
        out.append(
            {
                "leftOperand": "maxSharePerRelease",
                "operator": "lteq",
                "rightOperand": privacy.max_share_per_release,
            }
        )
    return out


def _codelists(
    document: AgreementDocument, codelists: Mapping[str, ResolvedCodeList]
) -> dict[str, Any]:
    """The shared code lists the version's fields refer to, with their codes: the export must
    say what values the parties agreed to without the reader looking anything up."""
    used: dict[str, list[str]] = {}
    for d in document.datasets:
        for f in d.fields:
            if f.constraints.codelist is not None:
                used.setdefault(f.constraints.codelist, []).append(
                    f"{dataset_iri(d.name)}#{f.name}"
                )
    if not used:
        return {}
    out = []
    for ref, fields in sorted(used.items()):
        found = codelists[ref]
        entry: dict[str, Any] = {
            "uid": f"urn:backbone:codelist:{found.id}:v{found.version}",
            "bb:ref": ref,
            "title": found.title,
            "bb:kind": found.kind,
            "bb:fields": fields,
            "bb:codes": list(found.codes),
        }
        if found.standard is not None:
            entry["bb:standard"] = found.standard
        out.append(entry)
    return {"bb:codeLists": out}


def to_odrl(
    document: AgreementDocument,
    *,
    version: int,
    status: str,
    content_hash: str,
    codelists: Mapping[str, ResolvedCodeList] | None = None,
) -> dict[str, Any]:
    """The ODRL 2.2 JSON-LD form of one agreement version; ``codelists`` must hold every code
    list version its fields refer to (their codes are part of the export)."""
    uid = f"urn:backbone:agreement:{document.uid}:v{version}"
    assigners = [p.org for p in document.parties if p.role == "assigner"]
    assignees = [p.org for p in document.parties if p.role == "assignee"]
    d = document.disclosure
    obligations = [_rule(r, uid, assigners) for r in document.rules.obligation]
    obligations.append(
        {
            "uid": f"{uid}:rule:disclosure-control",
            "action": "aggregate",
            "target": [dataset_iri(ds.name) for ds in document.datasets],
            "assignee": [org_iri(a) for a in assignees],
            "constraint": [
                *(
                    [{"leftOperand": "minCellSize", "operator": "gteq", "rightOperand": k}]
                    if (k := d.min_cell_size) is not None
                    else []
                ),
                {
                    "leftOperand": "disclosureMethod",
                    "operator": "isAnyOf",
                    "rightOperand": list(d.methods),
                },
                *_privacy_constraints(d.privacy),
            ],
        }
    )
    return {
        "@context": context(),
        "type": "Agreement",
        "uid": uid,
        "profile": PROFILE,
        "title": document.title,
        "version": version,
        "status": status,
        "contentHash": content_hash,
        "legalBasis": f"bb:{document.legal_basis}",
        "effective": Term.as_datetime(document.term.effective).isoformat(),
        "expires": Term.as_datetime(document.term.expires).isoformat(),
        "assigner": [org_iri(a) for a in assigners],
        "assignee": [org_iri(a) for a in assignees],
        "permission": [_rule(r, uid, assigners) for r in document.rules.permission],
        "prohibition": [_rule(r, uid, assigners) for r in document.rules.prohibition],
        "obligation": obligations,
        "bb:actionProfile": {name: parent for name, parent in vocab.ACTIONS.items()},
        **_review(document),
        **_codelists(document, codelists or {}),
    }


def _review(document: AgreementDocument) -> dict[str, Any]:
    """The "no surprises" clause as compiled (the superseded boolean with its defaults)."""
    review = publication_review(document)
    if review is None:
        return {}
    providers = sorted({ds.provider for ds in document.datasets})
    return {
        "bb:publicationReview": {
            "bb:reviewer": [org_iri(p) for p in providers],
            "bb:windowDays": review.window_days,
            "bb:onTimeout": review.on_timeout,
        }
    }
