"""Lint of an agreement document: what the schema cannot say.

Every finding has a stable ``code``, a ``path`` into the document and a message. All findings
block the agreement (the API answers 422); an agreement that lints clean can still be refused
by the parties, but never for a mechanical reason.

Checks: derived fields that do not compile and structural zeros over undeclared categories;
the closed vocabulary (actions, operands, operators, purposes, legal bases, geography
levels, disclosure methods); the clauses the legal basis requires; the minimum cell size against
the configured floor; privacy parameters when differential privacy is allowed (a share cap
that every release would exceed); rules that can
never apply (dead rules: unknown datasets, assignees that are not parties, constraints on
dimensions the datasets do not have); rules that contradict each other (a permission that a
prohibition always overrides, duplicate rules); permissions Backbone never grants
(record-level export, re-disclosure); notify duties the service cannot carry out (a notify
rule is an obligation naming, with ``isAnyOf``, the events it covers and the parties to tell,
and nothing else: the service then notifies those parties of those events itself); and the
review before publication (a window of 1 to 60 days and what happens when it passes; the
superseded ``publication_review_by_provider``); and references to shared code lists (each must
name a stored version of a code list, on a string field; a newer version of the list is a
warning, the one kind of finding that does not block). Lint reads no database: the caller
passes what it knows of the code lists the document refers to (a
:class:`agreements.codelists.CodeListCatalog`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agreements.codelists import CodeListCatalog, field_enum, parse_ref
from agreements.document import AgreementDocument, ConstraintSpec, PrivacySpec, RuleSpec
from agreements.expressions import InvalidExpression, compile_filter
from notifications.events import EVENT_OPERAND, EVENT_TYPES, NOTIFY, RECIPIENT_OPERAND
from policy import vocabulary as vocab
from policy.model import label_of
from policy.vocabulary import DisclosureMethod, FieldRole, FieldType

_OPERATORS_BY_KIND: dict[str, frozenset[str]] = {
    "term": frozenset({"eq", "neq", "isAnyOf", "isNoneOf"}),
    "set": frozenset({"isAnyOf", "isAllOf", "isNoneOf", "isPartOf"}),
    "geography": frozenset({"eq", "neq", "gt", "gteq", "lt", "lteq", "isAnyOf", "isNoneOf"}),
    "datetime": frozenset({"eq", "lt", "lteq", "gt", "gteq"}),
}
NEVER_PERMITTED = frozenset({"export_records", "redisclose"})
# A provider needs at least a day to look at a release; past two months, the figures are stale.
MIN_REVIEW_DAYS = 1
MAX_REVIEW_DAYS = 60
# The ledger's tolerance: a share that the ledger would accept is not a lint error.
_EPS_TOLERANCE = 1e-12


@dataclass(frozen=True)
class Finding:
    code: str
    path: str
    message: str
    # "error" blocks the agreement; "warning" (a newer code list version) only informs.
    severity: str = "error"

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def as_dict(self) -> dict[str, str]:
        return {
            "code": self.code,
            "path": self.path,
            "message": self.message,
            "severity": self.severity,
        }


def _values(spec: ConstraintSpec) -> list[Any]:
    value = spec.right_operand
    return list(value) if isinstance(value, list) else [value]


class _Linter:
    def __init__(
        self, document: AgreementDocument, k_floor: int, codelists: CodeListCatalog | None
    ) -> None:
        self.doc = document
        self.k_floor = k_floor
        self.codelists = codelists
        self.findings: list[Finding] = []
        self.datasets = {d.name: d for d in document.datasets}
        self.parties = {p.org for p in document.parties}

    def add(self, code: str, path: str, message: str, severity: str = "error") -> None:
        self.findings.append(Finding(code, path, message, severity))

    def codelist(self, path: str, f: Any) -> None:
        """A code list reference names a stored version, of a string field."""
        ref = f.constraints.codelist
        slug, version = parse_ref(ref)
        if f.type != FieldType.STRING:
            self.add(
                "bad-code-list-field",
                path,
                f"Field {f.name}: a code list's codes are text; only a string field can refer "
                "to one.",
            )
        if self.codelists is None:
            self.add(
                "unchecked-code-list",
                path,
                f"Code list {ref} is not checked here: the service checks it when the "
                "agreement is linted or drafted there.",
                severity="warning",
            )
            return
        latest = self.codelists.latest.get(slug)
        if latest is None:
            self.add("unknown-code-list", path, f"Code list {slug} does not exist.")
        elif ref not in self.codelists.resolved:
            self.add(
                "unknown-code-list-version",
                path,
                f"Code list {slug} has no version {version} (the latest is {latest}).",
            )
        elif latest > version:
            self.add(
                "newer-code-list-version",
                path,
                f"Field {f.name} refers to version {version} of code list {slug}; version "
                f"{latest} exists. Amend the agreement to refer to it if the parties agree.",
                severity="warning",
            )

    def run(self) -> list[Finding]:
        self.vocabulary()
        self.clauses()
        self.disclosure()
        self.fields()
        self.categories()
        self.schedule()
        for kind in ("permission", "prohibition", "obligation"):
            for i, rule in enumerate(getattr(self.doc.rules, kind)):
                self.rule(kind, i, rule)
        self.contradictions()
        self.linkage()
        self.publication_review()
        return self.findings

    def vocabulary(self) -> None:
        if self.doc.legal_basis not in vocab.LEGAL_BASES:
            self.add(
                "unknown-term",
                "legal_basis",
                f"Unknown legal basis '{self.doc.legal_basis}'; use one of {', '.join(sorted(vocab.LEGAL_BASES))}.",
            )

    def clauses(self) -> None:
        required = vocab.MANDATORY_CLAUSES.get(self.doc.legal_basis, ())
        for clause in required:
            if not self.doc.clauses.get(clause, "").strip():
                self.add(
                    "missing-clause",
                    f"clauses.{clause}",
                    f"An agreement under {self.doc.legal_basis} must state its {clause.replace('_', ' ')}.",
                )

    def disclosure(self) -> None:
        d = self.doc.disclosure
        if d.min_cell_size is None:
            # Fail closed: no default threshold is assumed for the data an agreement covers.
            self.add(
                "missing-min-cell-size",
                "disclosure.min_cell_size",
                "The agreement states no minimum cell size; state the fewest people a published "
                f"cell may count (at least {self.k_floor}).",
            )
        elif d.min_cell_size < self.k_floor:
            self.add(
                "k-below-floor",
                "disclosure.min_cell_size",
                f"The minimum cell size {d.min_cell_size} is below this service's floor of {self.k_floor}.",
            )
        if DisclosureMethod.DIFFERENTIAL_PRIVACY in d.methods:
            if d.privacy is None:
                self.add(
                    "missing-privacy-budget",
                    "disclosure.privacy",
                    "Differential privacy is allowed but no privacy budget is set.",
                )
            elif d.privacy.epsilon_per_release > d.privacy.epsilon_per_period:
                self.add(
                    "contradiction",
                    "disclosure.privacy",
                    "The privacy loss per release exceeds the budget per period.",
                )
            else:
                self.release_share(d.privacy)
        elif d.privacy is not None:
            self.add(
                "dead-clause",
                "disclosure.privacy",
                "A privacy budget is set but differential privacy is not an allowed method.",
            )

    def release_share(self, privacy: PrivacySpec) -> None:
        share = privacy.max_share_per_release
        if share is None:
            return
        cap = share * privacy.epsilon_per_period
        # Every release spends epsilon_per_release: above the cap, every one would be refused.
        if privacy.epsilon_per_release > cap + _EPS_TOLERANCE:
            self.add(
                "contradiction",
                "disclosure.privacy.max_share_per_release",
                f"One release may take at most {share:g} of a period's budget (epsilon "
                f"{cap:g} of {privacy.epsilon_per_period:g}), but each release spends "
                f"epsilon_per_release {privacy.epsilon_per_release:g}: every release would be "
                f"refused. Lower epsilon_per_release to at most {cap:g}, or raise "
                "max_share_per_release.",
            )

    def fields(self) -> None:
        for i, ds in enumerate(self.doc.datasets):
            if not any(f.role == FieldRole.IDENTIFIER for f in ds.fields):
                self.add(
                    "no-identifier",
                    f"datasets.{i}.fields",
                    f"Dataset {ds.name} has no identifier field, so people cannot be counted once each.",
                )
            for j, f in enumerate(ds.fields):
                path = f"datasets.{i}.fields.{j}"
                if f.geography is not None and f.geography not in vocab.GEOGRAPHY_RANK:
                    self.add(
                        "unknown-term",
                        f"{path}.geography",
                        f"Unknown geographic level '{f.geography}'.",
                    )
                if f.geography is not None and f.role != FieldRole.DIMENSION:
                    self.add(
                        "dead-clause",
                        f"{path}.geography",
                        "Only a dimension can hold a geographic level.",
                    )
                if f.constraints.codelist is not None:
                    self.codelist(f"{path}.constraints.codelist", f)
                if (
                    f.role == FieldRole.DIMENSION
                    and f.type != FieldType.BOOLEAN
                    and not f.constraints.enum
                    and f.constraints.codelist is None
                ):
                    self.add(
                        "undeclared-categories",
                        f"{path}.constraints.enum",
                        f"Dimension {f.name} must declare its values: published categories come from the agreement, never from the data.",
                    )
                if f.constraints.unique:
                    # Within one submission that is what primaryKey says; across submissions
                    # it would need the values kept, which pseudonymization forbids.
                    self.add(
                        "unsupported-term",
                        f"{path}.constraints.unique",
                        f"Field {f.name}: the unique constraint is not supported; list the "
                        "field in the dataset's primaryKey to refuse duplicates in a submission.",
                    )
                if f.role == FieldRole.IDENTIFIER and f.type not in (
                    FieldType.STRING,
                    FieldType.INTEGER,
                ):
                    self.add(
                        "bad-identifier",
                        f"{path}.type",
                        "An identifier must be a string or an integer.",
                    )

    def schedule(self) -> None:
        for i, ds in enumerate(self.doc.datasets):
            if ds.submission_schedule is None or ds.period_field is None:
                continue
            period = next((f for f in ds.fields if f.name == ds.period_field), None)
            if period is None or not period.constraints.enum:
                continue
            declared = {str(v) for v in period.constraints.enum}
            for label in sorted(ds.submission_schedule.due):
                if label not in declared:
                    self.add(
                        "dead-clause",
                        f"datasets.{i}.submission_schedule.due.{label}",
                        f"Period '{label}' is not a value of the period field {period.name}: "
                        "no submission can declare it, so its due date never applies.",
                    )

    def categories(self) -> None:
        """Derived fields compile against their dataset; structural zeros name declared
        categories (a combination of undeclared ones could never be enforced)."""
        for i, ds in enumerate(self.doc.datasets):
            fields = [(f.name, f.type, f.role) for f in ds.fields]
            for j, derived in enumerate(ds.derived):
                conditions = (
                    [("when", derived.when)]
                    if derived.when is not None
                    else [
                        (f"categories.{n}.when", c.when)
                        for n, c in enumerate(derived.categories or [])
                    ]
                )
                for where, text in conditions:
                    try:
                        compile_filter(text, fields)
                    except InvalidExpression as exc:
                        self.add(
                            "bad-expression",
                            f"datasets.{i}.derived.{j}.{where}",
                            f"Derived field {derived.name}: {exc.detail}",
                        )
            # None: the values of a code list this lint was not given (checked by the service).
            declared: dict[str, tuple[str, ...] | None] = {}
            resolved = self.codelists.resolved if self.codelists is not None else {}
            for f in ds.fields:
                if f.role == FieldRole.DIMENSION and f.type == FieldType.BOOLEAN:
                    declared[f.name] = ("true", "false")
                elif f.role == FieldRole.DIMENSION and f.constraints.enum:
                    declared[f.name] = tuple(label_of(v) for v in f.constraints.enum)
                elif f.role == FieldRole.DIMENSION and f.constraints.codelist is not None:
                    ref = f.constraints.codelist
                    declared[f.name] = (
                        tuple(label_of(v) for v in field_enum(f.constraints, resolved) or [])
                        if ref in resolved
                        else None
                    )
            for derived in ds.derived:
                declared[derived.name] = derived.labels
            for j, combination in enumerate(ds.structural_zeros):
                path = f"datasets.{i}.structural_zeros.{j}"
                for name, value in combination.items():
                    if name not in declared:
                        self.add(
                            "dead-clause",
                            f"{path}.{name}",
                            f"A structural zero names {name}, which is not a dimension with"
                            f" declared values or a derived field of dataset {ds.name}.",
                        )
                    elif (known := declared[name]) is not None and label_of(value) not in known:
                        self.add(
                            "unknown-category",
                            f"{path}.{name}",
                            f"A structural zero gives {name} a value it does not declare.",
                        )

    def rule(self, kind: str, index: int, rule: RuleSpec) -> None:
        path = f"rules.{kind}.{index}"
        if rule.action not in vocab.ACTIONS:
            self.add("unknown-term", f"{path}.action", f"Unknown action '{rule.action}'.")
        if kind == "permission" and rule.action in NEVER_PERMITTED:
            self.add(
                "never-permitted",
                f"{path}.action",
                f"Backbone never permits '{rule.action}': record-level data never leaves the service.",
            )
        targets = rule.targets()
        for t in targets:
            if t != "*" and t not in self.datasets:
                self.add(
                    "dead-rule",
                    f"{path}.target",
                    f"Rule {rule.id} targets dataset {t}, which this agreement does not define.",
                )
        for a in rule.assignees():
            if a != "*" and a not in self.parties:
                self.add(
                    "dead-rule",
                    f"{path}.assignee",
                    f"Rule {rule.id} is assigned to {a}, which is not a party.",
                )
        if rule.action == NOTIFY:
            self.notify(kind, path, rule)
        target_dims: set[str] = set()
        for t in targets:
            for name, ds in self.datasets.items():
                if t in ("*", name):
                    target_dims |= {f.name for f in ds.fields if f.role == FieldRole.DIMENSION}
                    target_dims |= {x.name for x in ds.derived}
        for j, c in enumerate(rule.constraint):
            self.constraint(f"{path}.constraint.{j}", rule, c, target_dims)

    def notify(self, kind: str, path: str, rule: RuleSpec) -> None:
        """A notify duty is enforced by the service: which events, to which parties, only."""
        if kind != "obligation":
            self.add(
                "unsupported-term",
                f"{path}.action",
                f"Rule {rule.id}: notify is a duty; Backbone enforces it as an obligation only.",
            )
            return
        found: dict[str, list[ConstraintSpec]] = {EVENT_OPERAND: [], RECIPIENT_OPERAND: []}
        for j, c in enumerate(rule.constraint):
            if c.left_operand not in found:
                self.add(
                    "unsupported-term",
                    f"{path}.constraint.{j}.leftOperand",
                    f"Notify obligation {rule.id} is enforced by event and recipient only; a "
                    f"constraint on {c.left_operand} cannot be kept.",
                )
                continue
            found[c.left_operand].append(c)
            if c.operator != "isAnyOf":
                self.add(
                    "unsupported-term",
                    f"{path}.constraint.{j}.operator",
                    f"Notify obligation {rule.id}: name the {c.left_operand}s with isAnyOf.",
                )
            for v in _values(c):
                if c.left_operand == EVENT_OPERAND and v not in EVENT_TYPES:
                    self.add(
                        "unknown-term",
                        f"{path}.constraint.{j}.rightOperand",
                        f"Unknown event '{v}'; the events are {', '.join(sorted(EVENT_TYPES))}.",
                    )
                elif c.left_operand == RECIPIENT_OPERAND and v not in self.parties:
                    self.add(
                        "dead-rule",
                        f"{path}.constraint.{j}.rightOperand",
                        f"Notify obligation {rule.id} names {v}, which is not a party.",
                    )
        for operand, what in ((EVENT_OPERAND, "the events"), (RECIPIENT_OPERAND, "the parties")):
            if len(found[operand]) != 1:
                self.add(
                    "unsupported-term",
                    f"{path}.constraint",
                    f"Notify obligation {rule.id} must name {what} to notify of in exactly one "
                    f"constraint over {operand} (isAnyOf).",
                )

    def constraint(
        self, path: str, rule: RuleSpec, c: ConstraintSpec, target_dims: set[str]
    ) -> None:
        kind = vocab.LEFT_OPERANDS.get(c.left_operand, (None, None))[0]
        if kind is None:
            self.add(
                "unknown-term", f"{path}.leftOperand", f"Unknown leftOperand '{c.left_operand}'."
            )
            return
        if c.operator not in vocab.OPERATORS:
            self.add("unknown-term", f"{path}.operator", f"Unknown operator '{c.operator}'.")
            return
        if c.operator not in _OPERATORS_BY_KIND[kind]:
            self.add(
                "bad-operator",
                f"{path}.operator",
                f"Operator {c.operator} does not apply to {c.left_operand}.",
            )
        if c.left_operand == EVENT_OPERAND and rule.action != NOTIFY:
            self.add(
                "unsupported-term",
                f"{path}.leftOperand",
                f"Rule {rule.id}: only a notify obligation can be constrained by event.",
            )
            return
        values = _values(c)
        if not values:
            self.add(
                "dead-rule",
                f"{path}.rightOperand",
                f"Rule {rule.id} has an empty constraint that nothing satisfies.",
            )
        if c.left_operand == "purpose":
            for v in values:
                if v not in vocab.PURPOSES:
                    self.add("unknown-term", f"{path}.rightOperand", f"Unknown purpose '{v}'.")
        elif c.left_operand == "spatialGranularity":
            for v in values:
                if v not in vocab.GEOGRAPHY_RANK:
                    self.add(
                        "unknown-term", f"{path}.rightOperand", f"Unknown geographic level '{v}'."
                    )
        elif c.left_operand == "disclosureMethod":
            for v in values:
                if v not in frozenset(vocab.DisclosureMethod):
                    self.add(
                        "unknown-term", f"{path}.rightOperand", f"Unknown disclosure method '{v}'."
                    )
                elif v not in self.doc.disclosure.methods:
                    self.add(
                        "contradiction",
                        f"{path}.rightOperand",
                        f"Rule {rule.id} allows method {v}, which disclosure.methods does not.",
                    )
        elif c.left_operand == "dimension":
            for v in values:
                if v not in target_dims:
                    self.add(
                        "dead-rule",
                        f"{path}.rightOperand",
                        f"Rule {rule.id} names dimension {v}, which its datasets do not have.",
                    )

    def contradictions(self) -> None:
        rules = self.doc.rules
        seen: dict[str, str] = {}
        for kind in ("permission", "prohibition", "obligation"):
            for i, rule in enumerate(getattr(rules, kind)):
                key = kind + repr(
                    (
                        rule.action,
                        sorted(rule.targets()),
                        sorted(rule.assignees()),
                        sorted(repr(c) for c in rule.constraint),
                    )
                )
                if key in seen:
                    self.add(
                        "duplicate-rule",
                        f"rules.{kind}.{i}",
                        f"Rule {rule.id} repeats rule {seen[key]}.",
                    )
                seen[key] = rule.id
        ids = [
            r.id
            for kind in ("permission", "prohibition", "obligation")
            for r in getattr(rules, kind)
        ]
        for rule_id in sorted({x for x in ids if ids.count(x) > 1}):
            self.add("duplicate-rule-id", "rules", f"Rule id {rule_id} is used more than once.")
        for i, perm in enumerate(rules.permission):
            for pro in rules.prohibition:
                if pro.action != perm.action or pro.constraint:
                    continue
                covers_targets = "*" in pro.targets() or set(perm.targets()) <= set(pro.targets())
                covers_assignees = "*" in pro.assignees() or (
                    "*" not in perm.assignees() and set(perm.assignees()) <= set(pro.assignees())
                )
                if covers_targets and covers_assignees:
                    self.add(
                        "contradiction",
                        f"rules.permission.{i}",
                        f"Permission {perm.id} can never apply: prohibition {pro.id} always overrides it.",
                    )

    def linkage(self) -> None:
        link = self.doc.linkage
        if link.allowed and not link.datasets:
            self.add(
                "dead-clause",
                "linkage.datasets",
                "Linkage is allowed but no dataset to link with is named.",
            )
        if not link.allowed and link.datasets:
            self.add(
                "contradiction",
                "linkage.datasets",
                "Datasets to link with are named but linkage is not allowed.",
            )

    def publication_review(self) -> None:
        if self.doc.publication_review_by_provider:
            self.add(
                "superseded-term",
                "publication_review_by_provider",
                "publication_review_by_provider is superseded: state the review as "
                "publication_review: {required: true, window_days: N, on_timeout: publish or "
                "hold}.",
            )
        review = self.doc.publication_review
        if review is None:
            return
        if not review.required:
            if review.window_days is not None or review.on_timeout is not None:
                self.add(
                    "dead-clause",
                    "publication_review",
                    "A review window or timeout is set but review is not required.",
                )
            return
        if review.window_days is None:
            self.add(
                "missing-review-window",
                "publication_review.window_days",
                f"Review is required: state how many days the providers have ({MIN_REVIEW_DAYS}"
                f" to {MAX_REVIEW_DAYS}).",
            )
        elif not MIN_REVIEW_DAYS <= review.window_days <= MAX_REVIEW_DAYS:
            self.add(
                "review-window-out-of-range",
                "publication_review.window_days",
                f"The review window must be between {MIN_REVIEW_DAYS} and {MAX_REVIEW_DAYS} days.",
            )
        if review.on_timeout is None:
            self.add(
                "missing-review-timeout",
                "publication_review.on_timeout",
                "Review is required: state what happens when the window passes without an "
                "answer (publish, or hold).",
            )


def lint(
    document: AgreementDocument,
    *,
    k_floor: int = 5,
    codelists: CodeListCatalog | None = None,
) -> list[Finding]:
    """Every mechanical problem with ``document``; an empty list means it lints clean.

    ``codelists`` is what the caller knows of the code lists the document refers to (the
    service always passes it); without it, as in a local lint, each reference is only noted
    as unchecked (a warning)."""
    return _Linter(document, k_floor, codelists).run()
