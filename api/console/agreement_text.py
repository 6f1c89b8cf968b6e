"""An agreement version for people: its document in plain language, and the difference between
two versions' documents.

Pure functions of the document the agreement service stored (no session, no query): the data
managers' console (:mod:`api.console.data_manager`) reads versions through the services the API
calls, then renders them with these.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from agreements.codelists import ResolvedCodeList
from agreements.document import AgreementDocument, ConstraintSpec, RuleSpec, Term
from policy.vocabulary import LEGAL_BASES

ACTION_PHRASES = {
    "submit": "submit record-level data of",
    "compute": "compute aggregates from",
    "publish": "publish aggregates computed from",
    "link": "link records of",
    "read": "read",
    "export_records": "export record-level data of",
    "redisclose": "disclose onward what was released from",
    "delete": "destroy the records of",
    "notify": "inform the parties about",
}
# leftOperand -> (how a sentence names it, whether it is plural)
OPERANDS = {
    "purpose": ("the purpose", False),
    "recipient": ("the recipients", True),
    "dimension": ("the breakdowns (dimensions)", True),
    "field": ("the fields", True),
    "spatialGranularity": ("the geographic level", False),
    "disclosureMethod": ("the disclosure method", False),
    "dateTime": ("the date and time", False),
    "linkedDataset": ("the linked datasets", True),
    "event": ("the events", True),
}
OPERATORS = {
    "eq": "",
    "neq": "not",
    "lt": "before or below",
    "lteq": "at most",
    "gt": "after or above",
    "gteq": "at least as coarse as",
    "isAnyOf": "one of",
    "isAllOf": "all of",
    "isNoneOf": "none of",
    "isPartOf": "limited to",
}
PUBLIC_RECIPIENT = "public"


@dataclass
class Section:
    """A heading and its sentences (each a plain string: the template escapes it)."""

    title: str
    sentences: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)


def _party(document: AgreementDocument, org: str) -> str:
    if org == "*":
        return "any party"
    if org == PUBLIC_RECIPIENT:
        return "the public"
    for p in document.parties:
        if p.org == org:
            return f"{p.name} ({org})" if p.name else org
    return org


def _list(values: list[str]) -> str:
    if len(values) <= 1:
        return "".join(values)
    return ", ".join(values[:-1]) + " and " + values[-1]


def _date(value: Any) -> str:
    return Term.as_datetime(value).strftime("%-d %B %Y")


def _term(value: str) -> str:
    """A vocabulary term for people: ``dpv:PublicBenefit`` is "public benefit
    (dpv:PublicBenefit)"."""
    if ":" not in value:
        return value.replace("_", " ")
    name = value.split(":", 1)[1]
    words = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).lower()
    return f"{words} ({value})"


def _value(left: str, value: Any, document: AgreementDocument) -> str:
    values = value if isinstance(value, list) else [value]
    if left == "recipient":
        return _list([_party(document, str(v)) for v in values])
    if left in ("purpose", "disclosureMethod"):
        return _list([_term(str(v)) for v in values])
    return _list([str(v) for v in values])


def constraint_text(spec: ConstraintSpec, document: AgreementDocument) -> str:
    operand, plural = OPERANDS.get(spec.left_operand, (spec.left_operand, False))
    operator = OPERATORS.get(spec.operator, spec.operator)
    verb = "are" if plural else "is"
    phrase = f"{verb} {operator}" if operator else verb
    return f"{operand} {phrase} {_value(spec.left_operand, spec.right_operand, document)}"


def _targets(document: AgreementDocument, rule: RuleSpec) -> str:
    titles = {d.name: d.title or d.name for d in document.datasets}
    targets = rule.targets()
    if "*" in targets:
        return "the agreement's datasets"
    return _list([f"{titles.get(t, t)} ({t})" for t in targets])


def rule_text(document: AgreementDocument, rule: RuleSpec, verb: str) -> str:
    who = _list([_party(document, a) for a in rule.assignees()])
    what = ACTION_PHRASES.get(rule.action, rule.action)
    if verb == "must never" and rule.assignees() == ["*"]:
        who, verb = "no party", "may"
    sentence = f"{who[:1].upper()}{who[1:]} {verb} {what} {_targets(document, rule)}"
    if rule.constraint:
        sentence += ", only where " + "; ".join(
            constraint_text(c, document) for c in rule.constraint
        )
    sentence += "."
    if rule.description:
        sentence += f" {rule.description}"
    return sentence


def _recipients(document: AgreementDocument) -> list[str]:
    found: list[str] = []
    for rule in document.rules.permission:
        if rule.action != "publish":
            continue
        for c in rule.constraint:
            if c.left_operand == "recipient":
                values = c.right_operand if isinstance(c.right_operand, list) else [c.right_operand]
                found.extend(str(v) for v in values if str(v) not in found)
    return found


def _values_text(d: Any, codelists: Mapping[str, ResolvedCodeList]) -> list[str]:
    """What values each field with declared values takes, naming the shared code list."""
    out = []
    for f in d.fields:
        ref = f.constraints.codelist
        if ref is not None:
            found = codelists.get(ref)
            if found is None:
                out.append(f"{f.name} takes a value of code list {ref}, which does not exist.")
                continue
            standard = f", following {found.standard}" if found.standard else ""
            out.append(
                f"{f.name} takes one of the {len(found.codes)} values of the shared code list"
                f" {found.title} ({found.id}, version {found.version}{standard}):"
                f" {_list(list(found.codes))}."
            )
        elif f.constraints.enum is not None:
            values = [str(v) for v in f.constraints.enum]
            out.append(f"{f.name} takes one of {len(values)} values: {_list(values)}.")
    return out


def plain_language(
    document: AgreementDocument, codelists: Mapping[str, ResolvedCodeList] | None = None
) -> list[Section]:
    """The document, section by section, as sentences a data manager can check;
    ``codelists`` holds the code list versions its fields refer to."""
    out: list[Section] = []
    parties = Section("Who is party")
    for p in document.parties:
        role = "provides data" if p.role == "assigner" else "receives and works with the data"
        parties.items.append(f"{_party(document, p.org)} {role}.")
    out.append(parties)

    purpose = Section("Purpose and legal basis")
    basis = LEGAL_BASES.get(document.legal_basis, document.legal_basis)
    purpose.sentences.append(f"Legal basis: {basis}.")
    # The purpose first, then the other clauses as the document names them.
    for key, text in sorted(document.clauses.items(), key=lambda kv: kv[0] != "purpose"):
        purpose.items.append(f"{key.replace('_', ' ').capitalize()}: {text}")
    out.append(purpose)

    term = Section("Term")
    term.sentences.append(
        f"The term runs from {_date(document.term.effective)} until"
        f" {_date(document.term.expires)}; a version governs only once every party has approved"
        " it."
    )
    out.append(term)

    data = Section("Datasets and fields")
    for d in document.datasets:
        fields = [f"{f.name} ({f.type.value}, {f.role.value})" for f in d.fields]
        text = (
            f"{d.title or d.name} ({d.name}), provided by {_party(document, d.provider)}:"
            f" {len(d.fields)} field(s): {_list(fields)}."
        )
        if d.derived:
            text += " Categories computed from them: " + _list([x.name for x in d.derived]) + "."
        values = _values_text(d, codelists or {})
        if values:
            text += " " + " ".join(values)
        data.items.append(text)
    out.append(data)

    rules = Section("Who may do what")
    for rule in document.rules.permission:
        rules.items.append(rule_text(document, rule, "may"))
    for rule in document.rules.prohibition:
        rules.items.append(rule_text(document, rule, "must never"))
    for rule in document.rules.obligation:
        rules.items.append(rule_text(document, rule, "must"))
    out.append(rules)

    disclosure = Section("Disclosure rules")
    dis = document.disclosure
    if dis.min_cell_size is not None:
        disclosure.sentences.append(
            f"No published cell may count fewer than {dis.min_cell_size} people."
        )
    else:
        disclosure.sentences.append("No minimum cell size is set (lint flags this).")
    methods = _list([m.value.replace("_", " ") for m in dis.methods])
    disclosure.sentences.append(f"Releases are protected by {methods}.")
    if dis.rounding.value != "none":
        disclosure.sentences.append(f"Published counts are rounded ({dis.rounding.value}).")
    if dis.top_code_percent is not None:
        disclosure.sentences.append(
            f"Values are top-coded at the {dis.top_code_percent}th percentile."
        )
    if dis.bottom_code_percent is not None:
        disclosure.sentences.append(
            f"Values are bottom-coded at the {dis.bottom_code_percent}th percentile."
        )
    if dis.privacy is not None:
        dp = dis.privacy
        disclosure.sentences.append(
            f"Differential privacy: at most ε = {dp.epsilon_per_release} per release and"
            f" ε = {dp.epsilon_per_period} per {dp.period.replace('_', ' ')}, each person counted"
            f" at most {dp.max_contributions} time(s)."
        )
    recipients = _recipients(document)
    if recipients:
        public = " (the public included)" if PUBLIC_RECIPIENT in recipients else ""
        names = _list([_party(document, r) for r in recipients])
        disclosure.sentences.append(f"Releases may go to {names}{public}.")
    else:
        disclosure.sentences.append("No publication rule names its recipients.")
    out.append(disclosure)

    linkage = Section("Linkage")
    if document.linkage.allowed:
        linkage.sentences.append(
            "Records may be linked with " + (_list(document.linkage.datasets) or "no dataset") + "."
        )
    else:
        linkage.sentences.append("Records may not be linked with other datasets.")
    out.append(linkage)

    retention = Section("Retention and destruction")
    retention.sentences.append(
        f"Records are destroyed within {document.retention.grace_period_days} day(s) of the end"
        " of the term, termination or withdrawal."
    )
    if "destruction" in document.clauses:
        retention.sentences.append(document.clauses["destruction"])
    if document.withdrawal.allowed and document.withdrawal.notice_days:
        retention.sentences.append(
            f"A provider may withdraw with {document.withdrawal.notice_days} day(s) of notice."
        )
    elif document.withdrawal.allowed:
        retention.sentences.append("A provider may withdraw at any time, without notice.")
    else:
        retention.sentences.append("A provider may not withdraw before the end of the term.")
    out.append(retention)

    review = Section("Review before publication")
    pr = document.publication_review
    if pr is not None and pr.required:
        window = f"{pr.window_days} day(s)" if pr.window_days else "a window the lint checks"
        timeout = {"publish": "published", "hold": "kept held"}.get(pr.on_timeout or "", "")
        review.sentences.append(
            f"The data providers review every release before it is published and have {window}"
            " to approve or object; an objection stops it."
            + (f" Without an answer in time it is {timeout}." if timeout else "")
        )
    elif document.publication_review_by_provider:
        review.sentences.append("The data providers review every release (legacy clause).")
    else:
        review.sentences.append("Releases are published without review by the providers.")
    out.append(review)
    return out


def canonical_yaml(document: dict[str, Any]) -> list[str]:
    """The document as YAML with sorted keys, one string per line (what the diff compares)."""
    text = yaml.safe_dump(document, sort_keys=True, allow_unicode=True, width=100)
    return text.splitlines()


@dataclass(frozen=True)
class DiffRow:
    """One line of a diff: ``kind`` is same, added, removed or gap (unchanged lines left out)."""

    kind: str
    old: int | None
    new: int | None
    text: str


def diff_rows(old: list[str], new: list[str], context: int = 3) -> list[DiffRow]:
    """The lines that differ between ``old`` and ``new``, with ``context`` lines around each."""
    rows: list[DiffRow] = []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for group in matcher.get_grouped_opcodes(context):
        if rows:
            rows.append(DiffRow("gap", None, None, "…"))
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                for k in range(i2 - i1):
                    rows.append(DiffRow("same", i1 + k + 1, j1 + k + 1, old[i1 + k]))
                continue
            if tag in ("replace", "delete"):
                for k in range(i1, i2):
                    rows.append(DiffRow("removed", k + 1, None, old[k]))
            if tag in ("replace", "insert"):
                for k in range(j1, j2):
                    rows.append(DiffRow("added", None, k + 1, new[k]))
    return rows
