"""What a partner sends: each dataset as a Frictionless Table Schema, and a CSV template.

Everything here is derived from the governing agreement version: the constraints from its
compiled :class:`policy.model.DatasetTerms` (what :class:`records.validate.Validator` checks, so
the published schema and the validator cannot disagree), titles and descriptions from its
document. Backbone's own terms, which the Table Schema has no word for, are under ``x-backbone``.

Who sees a dataset: a client the policy engine allows to submit to it now (the "submit"
decision, as on submission), and a holder of ``agreements:read`` who may read the governing
agreement (a party, the backbone, an auditor). Anyone else gets the same 404 as for a dataset
that does not exist, so the answer is no oracle of which datasets exist.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import polars as pl
from sqlalchemy.orm import Session

from agreements import repository as agreement_repo
from agreements.document import AgreementDocument, DatasetSpec
from audit.actions import AuditAction
from audit.service import AuditRecord, record
from core.context import RequestContext
from core.errors import NotFound
from policy.engine import PolicySet, decide
from policy.model import AgreementTerms, Context, DatasetTerms, Decision, FieldTerms, Resource
from policy.model import label_of as _label
from policy.vocabulary import FieldRole, FieldType
from records import validate
from records.service import authorize_quietly

_NOT_FOUND = "No dataset of that name is open to this client."
_NUMERIC = (FieldType.INTEGER, FieldType.NUMBER, FieldType.YEAR)
# Tried in turn for a string field without an enum; the first that passes its constraints wins.
_EXAMPLE_TEXT = ("example", "X", "0")


@dataclass(frozen=True)
class Governed:
    """A dataset as one agreement version in force defines it, and the decision that showed it."""

    terms: AgreementTerms
    dataset: DatasetTerms
    decision: Decision
    # How the caller may see it: "submitter" (may submit now) or "reader" (agreements:read).
    access: str


def _readable(ctx: RequestContext, policy: PolicySet, terms: AgreementTerms) -> Decision | None:
    assert ctx.principal is not None
    if "agreements:read" not in ctx.principal.scopes:
        return None
    decision = decide(
        ctx.principal,
        "read_agreement",
        Resource(agreement_id=terms.id),
        Context(),
        policy,
        ctx.now,
    )
    return decision if decision.permitted else None


def _governed(ctx: RequestContext, policy: PolicySet, name: str) -> Governed | None:
    """The dataset ``name`` as the caller may see it, or None (unknown or not open to it)."""
    assert ctx.principal is not None
    if "records:write" in ctx.principal.scopes:
        found = authorize_quietly(ctx, policy, name)
        if found is not None:
            target, decision = found
            for terms in policy.versions(target.agreement_id):
                if terms.version == target.version:
                    return Governed(terms, target.dataset, decision, "submitter")
    for terms in sorted(policy.covering(name), key=lambda t: (t.id, -t.version)):
        dataset = terms.dataset(name)
        if dataset is None or not terms.in_force(ctx.now):
            continue
        readable = _readable(ctx, policy, terms)
        if readable is not None:
            return Governed(terms, dataset, readable, "reader")
    return None


def _visible(ctx: RequestContext, policy: PolicySet) -> list[Governed]:
    names = sorted({ds.name for terms in policy.agreements for ds in terms.datasets})
    return [g for name in names if (g := _governed(ctx, policy, name)) is not None]


def _document_spec(session: Session, governed: Governed) -> DatasetSpec | None:
    row = agreement_repo.get_version(session, governed.terms.id, governed.terms.version)
    if row is None:  # pragma: no cover - compiled terms always come from a stored version
        return None
    document = AgreementDocument.model_validate(row.document)
    return next((d for d in document.datasets if d.name == governed.dataset.name), None)


def required(dataset: DatasetTerms, spec: FieldTerms) -> bool:
    """Whether the validator requires a value of ``spec`` (required, or part of the key)."""
    return spec.required or spec.name in dataset.key


def constraints(dataset: DatasetTerms, spec: FieldTerms) -> dict[str, Any]:
    """The Table Schema constraints of a field: exactly those the validator checks."""
    out: dict[str, Any] = {"required": required(dataset, spec)}
    if spec.enum is not None:
        out["enum"] = [_label(v) if spec.type == FieldType.STRING else v for v in spec.enum]
    if spec.type in _NUMERIC:
        if spec.minimum is not None:
            out["minimum"] = _number(spec, spec.minimum)
        if spec.maximum is not None:
            out["maximum"] = _number(spec, spec.maximum)
    if spec.type == FieldType.STRING:
        if spec.pattern is not None:
            out["pattern"] = spec.pattern
        if spec.min_length is not None:
            out["minLength"] = spec.min_length
        if spec.max_length is not None:
            out["maxLength"] = spec.max_length
    return out


def _number(spec: FieldTerms, value: float) -> int | float:
    # Agreements store bounds as floats; an integer field's bound reads as an integer.
    if spec.type != FieldType.NUMBER and float(value).is_integer():
        return int(value)
    return value


def open_periods(dataset: DatasetTerms) -> list[str] | None:
    """The periods a submission may declare: the period field's enum, if it has one (None when
    the dataset has no period field or its values are not enumerated)."""
    if dataset.period_field is None:
        return None
    spec = dataset.field(dataset.period_field)
    if spec is None or spec.enum is None:
        return None
    return [_label(v) for v in spec.enum]


def _field(dataset: DatasetTerms, spec: FieldTerms, doc: DatasetSpec | None) -> dict[str, Any]:
    source = next((f for f in doc.fields if f.name == spec.name), None) if doc else None
    out: dict[str, Any] = {"name": spec.name, "type": spec.type}
    if source is not None and source.title:
        out["title"] = source.title
    if source is not None and source.description:
        out["description"] = source.description
    if spec.type == FieldType.DATE:
        out["format"] = "default"  # ISO 8601, YYYY-MM-DD: what the validator parses
    if spec.type == FieldType.BOOLEAN:
        out["trueValues"] = list(validate.TRUE_VALUES)
        out["falseValues"] = list(validate.FALSE_VALUES)
    out["constraints"] = constraints(dataset, spec)
    out["x-backbone-role"] = spec.role
    if spec.codelist is not None:
        # constraints.enum holds the codes; this says where they come from.
        note: dict[str, Any] = {"ref": spec.codelist}
        if spec.codelist_standard is not None:
            note["standard"] = spec.codelist_standard
        out["x-backbone-codelist"] = note
    return out


def describe_fields(dataset: DatasetTerms, doc: DatasetSpec | None = None) -> list[dict[str, Any]]:
    """The Table Schema ``fields`` of a dataset, in the agreement's (and the validator's) order."""
    return [_field(dataset, spec, doc) for spec in dataset.fields]


def _derived(doc: DatasetSpec | None) -> list[dict[str, Any]]:
    if doc is None:
        return []
    out = []
    for d in doc.derived:
        rule: dict[str, Any]
        if d.when is not None:
            rule = {"when": d.when}
        else:
            rule = {
                "categories": [{"value": c.value, "when": c.when} for c in d.categories or ()],
                "otherwise": d.otherwise,
            }
        out.append({"name": d.name, "title": d.title, "rule": rule, "labels": list(d.labels)})
    return out


def describe(governed: Governed, doc: DatasetSpec | None) -> dict[str, Any]:
    """The dataset document: a Table Schema with Backbone's terms, and the governing agreement."""
    dataset, terms = governed.dataset, governed.terms
    schema: dict[str, Any] = {
        "fields": describe_fields(dataset, doc),
        # A blank value is a missing value (see records.validate).
        "missingValues": [""],
    }
    if dataset.key:
        schema["primaryKey"] = list(dataset.key)
    schema["x-backbone"] = {
        "period_field": dataset.period_field,
        "identifiers": [f.name for f in dataset.fields if f.role == FieldRole.IDENTIFIER],
        "identifiers_note": (
            "Identifier fields are replaced by keyed linkage tokens on receipt; their values are "
            "never stored and never leave the service."
        ),
        "derived": _derived(doc),
        "geography": {f.name: f.geography for f in dataset.fields if f.geography},
        "structural_zeros": [dict(combination) for combination in dataset.structural_zeros],
    }
    name = dataset.name
    return {
        "name": name,
        "title": doc.title if doc else None,
        "description": doc.description if doc else None,
        "provider": dataset.provider,
        "access": governed.access,
        "agreement": {
            "id": terms.id,
            "version": terms.version,
            "effective": terms.effective.isoformat(),
            "expires": terms.expires.isoformat() if terms.expires else None,
        },
        "periods_open": open_periods(dataset),
        "formats": [
            "text/csv",
            "application/x-ndjson",
            "application/json",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "application/vnd.oasis.opendocument.spreadsheet",
        ],
        "links": {
            "template": f"/v1/datasets/{name}/template",
            "submissions": f"/v1/datasets/{name}/submissions",
        },
        "schema": schema,
    }


def _audit(
    session: Session, ctx: RequestContext, action: AuditAction, found: list[Governed], what: str
) -> None:
    record(
        session,
        ctx,
        AuditRecord(
            action=action,
            resource_type="dataset",
            resource_id=found[0].dataset.name if len(found) == 1 and what != "list" else None,
            decision=found[0].decision if len(found) == 1 else None,
            agreements=sorted({(g.terms.id, g.terms.version) for g in found}),
            counts={"datasets": len(found)},
            detail=what,
        ),
    )


def list_datasets(session: Session, ctx: RequestContext, policy: PolicySet) -> list[dict[str, Any]]:
    """The datasets open to the caller, each described; the read is audited."""
    found = _visible(ctx, policy)
    _audit(session, ctx, AuditAction.DATASET_LIST, found, "list")
    return [describe(g, _document_spec(session, g)) for g in found]


def _one(ctx: RequestContext, policy: PolicySet, name: str) -> Governed:
    governed = _governed(ctx, policy, name)
    if governed is None:
        raise NotFound(_NOT_FOUND)
    return governed


def get_dataset(
    session: Session, ctx: RequestContext, policy: PolicySet, name: str
) -> dict[str, Any]:
    """One dataset open to the caller (404 otherwise, as for one that does not exist)."""
    governed = _one(ctx, policy, name)
    _audit(session, ctx, AuditAction.DATASET_READ, [governed], "schema")
    return describe(governed, _document_spec(session, governed))


# -- the template ---------------------------------------------------------------------------------


def _from_pattern(pattern: str) -> str | None:
    """A short string matching ``pattern`` made of 'X', '0' and the pattern's literals: obviously
    synthetic. None when the pattern uses something this walk does not know."""
    from re import _parser as sre  # type: ignore[attr-defined]  # the stdlib parse tree

    def pick(items: list[tuple[Any, Any]]) -> str | None:
        chars: list[str] = []
        for op, arg in items:
            name = str(op)
            if name == "LITERAL":
                chars.append(chr(arg))
            elif name == "RANGE":
                lo, hi = arg
                chars.extend(c for c in "X0" if lo <= ord(c) <= hi)
                chars.append(chr(lo))
            elif name == "CATEGORY":
                chars.append("0" if "DIGIT" in str(arg) else "X")
        return chars[0] if chars else None

    def walk(tokens: Any) -> str | None:
        out: list[str] = []
        for op, arg in tokens:
            name = str(op)
            if name == "LITERAL":
                out.append(chr(arg))
            elif name == "ANY":
                out.append("X")
            elif name == "IN":
                if arg and str(arg[0][0]) == "NEGATE":
                    return None
                ch = pick(arg)
                if ch is None:
                    return None
                out.append(ch)
            elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
                low, high, sub = arg
                piece = walk(sub)
                if piece is None:
                    return None
                # At least once where allowed: an optional part shows what it looks like.
                out.append(piece * max(low, min(1, high)))
            elif name == "SUBPATTERN":
                piece = walk(arg[-1])
                if piece is None:
                    return None
                out.append(piece)
            elif name == "BRANCH":
                piece = walk(arg[1][0])
                if piece is None:
                    return None
                out.append(piece)
            elif name in ("AT",):
                continue
            else:
                return None
        return "".join(out)

    try:
        made = walk(sre.parse(pattern))
    except (re.error, RecursionError, ValueError):
        return None
    return made if made is not None and re.fullmatch(pattern, made) else None


def _candidates(dataset: DatasetTerms, spec: FieldTerms) -> list[str]:
    """Example values of a field, most fitting first, as text for a CSV cell."""
    if spec.name == dataset.period_field:
        periods = open_periods(dataset)
        if periods:
            return periods[:1]
    if spec.enum is not None:
        return [_label(v) for v in spec.enum[:3]]
    if spec.type in _NUMERIC:
        low = spec.minimum if spec.minimum is not None else None
        high = spec.maximum if spec.maximum is not None else None
        if spec.type == FieldType.YEAR:
            low = max(low or 2000, 1000)
        value = low if low is not None else (min(high, 1) if high is not None else 1)
        text = (
            str(int(value))
            if spec.type != FieldType.NUMBER or float(value).is_integer()
            else str(value)
        )
        return [text]
    if spec.type == FieldType.BOOLEAN:
        return ["true", "false"]
    if spec.type == FieldType.DATE:
        return ["2000-01-01"]
    if spec.pattern is not None:
        made = _from_pattern(spec.pattern)
        if spec.role == FieldRole.IDENTIFIER and spec.pattern is not None:
            synthetic = "XX00000001"
            if re.fullmatch(spec.pattern, synthetic):
                return [synthetic]
        return [made] if made is not None else []
    low = spec.min_length or 1
    high = spec.max_length
    texts = [t for t in _EXAMPLE_TEXT if len(t) >= low and (high is None or len(t) <= high)]
    return texts or ["X" * low]


def _rows(dataset: DatasetTerms) -> Iterator[dict[str, str]]:
    choices = [_candidates(dataset, spec) or [""] for spec in dataset.fields]
    names = [spec.name for spec in dataset.fields]
    # Bounded: a structural zero rules out some combinations, never most of them.
    for combination in itertools.islice(itertools.product(*choices), 200):
        yield dict(zip(names, combination, strict=True))


def example_row(dataset: DatasetTerms) -> dict[str, str] | None:
    """One synthetic record that the validator accepts, or None if none was found."""
    period = open_periods(dataset)
    for row in _rows(dataset):
        validator = validate.Validator(dataset, period=period[0] if period else None)
        frame = pl.DataFrame({k: [v] for k, v in row.items()}, schema=dict.fromkeys(row, pl.String))
        if validator.check(frame) is not None and validator.ok:
            return row
    return None


def template(session: Session, ctx: RequestContext, policy: PolicySet, name: str) -> str:
    """A CSV: the header in the agreement's field order and one synthetic row that passes
    validation (the row is left out if none was found)."""
    governed = _one(ctx, policy, name)
    _audit(session, ctx, AuditAction.DATASET_READ, [governed], "template")
    dataset = governed.dataset
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([spec.name for spec in dataset.fields])
    row = example_row(dataset)
    if row is not None:
        writer.writerow([row[spec.name] for spec in dataset.fields])
    return out.getvalue()
