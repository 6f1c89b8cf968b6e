"""Every field of the agreement schema is kept: enforced (with the tests that show it), refused
by lint as unsupported, or descriptive (words for people, carried into what every party approves).

A term that is accepted and not kept is worse than one that is refused. This test walks the JSON
Schema that `GET /v1/agreements/schema` publishes and fails on any field this file does not
account for, on any reference to a test that does not exist, and on any refused field that lint
lets through. A new field of the schema therefore needs its enforcement and its test first.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from agreements.document import AgreementDocument
from agreements.lint import lint
from demo.seed import code_list_catalog, code_list_versions
from policy import vocabulary as vocab

CATALOG = code_list_catalog()
VERSIONS = code_list_versions()

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Enforced:
    """Kept by the service; ``tests`` show it (``path::function`` or ``cases.yaml#case name``)."""

    tests: tuple[str, ...]


@dataclass(frozen=True)
class Refused:
    """Refused by lint with ``code`` when ``set`` puts the unsupported value in a document."""

    code: str
    set: Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Descriptive:
    """Words for people: no behaviour to enforce, shown where ``where`` says, and part of the
    canonical content every party approves (checked below)."""

    where: str
    set: Callable[[dict[str, Any]], None]


Kept = Enforced | Refused | Descriptive

POLICY = "tests/policy/test_cases.py::test_case"
CODELISTS = "tests/agreements/test_codelists.py::"
LINT = "tests/agreements/test_lint.py::"
API = "tests/agreements/test_api.py::"
VALIDATE = "tests/records/test_validate.py::"
WITHDRAWAL = "tests/records/test_withdrawal_terms.py::"
REVIEW = "tests/indicators/test_review.py::"


def _dataset(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["datasets"][0]


def _field(doc: dict[str, Any]) -> dict[str, Any]:
    return _dataset(doc)["fields"][0]


def _set_unique(doc: dict[str, Any]) -> None:
    _field(doc).setdefault("constraints", {})["unique"] = True


def _text(*path: str | int) -> Callable[[dict[str, Any]], None]:
    def put(doc: dict[str, Any]) -> None:
        node: Any = doc
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = "words a person reads " + "-".join(str(p) for p in path)

    return put


RULE_TESTS = (
    "tests/policy/test_cases.py::test_cases_cover_the_whole_vocabulary",
    LINT + "test_unknown_vocabulary_terms",
    LINT + "test_dead_rules",
    LINT + "test_contradictions_and_duplicates",
    "tests/policy/test_public_recipient.py::test_the_public_is_never_implied",
)

KEPT: dict[str, Kept] = {
    "profile": Enforced((API + "test_malformed_and_mistyped_documents",)),
    "uid": Enforced(
        (API + "test_an_amendment_supersedes_and_history_answers_which_version_governed",)
    ),
    "title": Descriptive("the ODRL export and every listing", _text("title")),
    "legal_basis": Enforced(
        (LINT + "test_ferpa_studies_needs_its_five_clauses", LINT + "test_unknown_vocabulary_terms")
    ),
    "clauses": Enforced((LINT + "test_ferpa_studies_needs_its_five_clauses",)),
    "parties": Enforced(
        (
            API + "test_activation_needs_every_party_to_approve_the_exact_version",
            "tests/identity/test_object_access.py::test_agreements_are_visible_to_their_parties_only",
        )
    ),
    "parties[].org": Enforced(
        ("tests/identity/test_object_access.py::test_a_non_party_cannot_approve",)
    ),
    "parties[].role": Enforced(
        (
            "tests/records/test_submissions_api.py::"
            "test_policy_denies_a_partner_that_does_not_provide_the_dataset",
        )
    ),
    "parties[].name": Descriptive("the parties' display names", _text("parties", 0, "name")),
    "term": Enforced(
        ("tests/policy/cases/lifecycle.yaml#an agreement not yet effective permits nothing",)
    ),
    "term.effective": Enforced(
        (
            "tests/policy/cases/lifecycle.yaml#an agreement not yet effective permits nothing",
            "tests/policy/cases/lifecycle.yaml#the same agreement once effective",
        )
    ),
    "term.expires": Enforced(
        ("tests/records/test_retention.py::test_expiry_counts_from_the_end_of_the_term",)
    ),
    "datasets": Enforced(
        (
            "tests/hardening/test_error_messages.py::"
            "test_an_unknown_dataset_is_named_with_those_the_client_may_submit",
        )
    ),
    "datasets[].name": Enforced(
        (
            "tests/identity/test_object_access.py::test_a_partner_cannot_submit_to_another_partners_dataset",
        )
    ),
    "datasets[].title": Descriptive("the dataset's listing", _text("datasets", 0, "title")),
    "datasets[].description": Descriptive(
        "the dataset's listing", _text("datasets", 0, "description")
    ),
    "datasets[].provider": Enforced(
        (
            "tests/records/test_submissions_api.py::"
            "test_policy_denies_a_partner_that_does_not_provide_the_dataset",
        )
    ),
    "datasets[].submitters": Enforced(
        (
            "tests/identity/test_object_access.py::test_a_partner_cannot_submit_to_another_partners_dataset",
        )
    ),
    "datasets[].primaryKey": Enforced(
        (
            VALIDATE + "test_duplicate_keys_across_parts_report_every_later_record",
            "tests/hardening/test_error_messages.py::test_typed_duplicates_across_parts_and_missing_keys",
        )
    ),
    "datasets[].period_field": Enforced((VALIDATE + "test_period_must_match_the_declared_period",)),
    "datasets[].fields": Enforced(
        (
            VALIDATE + "test_unknown_and_missing_header_fields",
            API + "test_a_partner_cannot_submit_a_field_its_agreement_does_not_list",
        )
    ),
    "datasets[].fields[].name": Enforced((VALIDATE + "test_unknown_and_missing_header_fields",)),
    "datasets[].fields[].title": Descriptive(
        "the dataset's field listing", _text("datasets", 0, "fields", 0, "title")
    ),
    "datasets[].fields[].description": Descriptive(
        "the dataset's field listing", _text("datasets", 0, "fields", 0, "description")
    ),
    "datasets[].fields[].type": Enforced(
        (VALIDATE + "test_each_rule", VALIDATE + "test_a_good_record_is_typed")
    ),
    "datasets[].fields[].role": Enforced(
        (
            "tests/records/test_pseudonymize.py::test_pseudonymize_replaces_only_identifiers",
            LINT + "test_dimensions_must_declare_their_values",
        )
    ),
    "datasets[].fields[].geography": Enforced(
        (API + "test_a_geography_finer_than_permitted_is_refused_with_reasons",)
    ),
    "datasets[].fields[].constraints": Enforced((VALIDATE + "test_each_rule",)),
    "datasets[].fields[].constraints.required": Enforced((VALIDATE + "test_each_rule",)),
    # Frictionless' `unique` over one submission is what primaryKey already says; across
    # submissions it would need the values kept, which pseudonymization forbids.
    "datasets[].fields[].constraints.unique": Refused("unsupported-term", _set_unique),
    "datasets[].fields[].constraints.enum": Enforced(
        (VALIDATE + "test_each_rule", LINT + "test_dimensions_must_declare_their_values")
    ),
    "datasets[].fields[].constraints.codelist": Enforced(
        (
            CODELISTS + "test_a_value_outside_the_code_list_is_refused_like_an_enum",
            CODELISTS + "test_lint_checks_every_reference",
        )
    ),
    "datasets[].fields[].constraints.minimum": Enforced((VALIDATE + "test_each_rule",)),
    "datasets[].fields[].constraints.maximum": Enforced((VALIDATE + "test_each_rule",)),
    "datasets[].fields[].constraints.pattern": Enforced(
        (
            VALIDATE + "test_each_rule",
            VALIDATE + "test_pattern_the_rust_engine_cannot_run_is_checked_in_python",
        )
    ),
    "datasets[].fields[].constraints.minLength": Enforced((VALIDATE + "test_each_rule",)),
    "datasets[].fields[].constraints.maxLength": Enforced((VALIDATE + "test_each_rule",)),
    "datasets[].derived": Enforced(
        (
            "tests/records/test_structural_zeros.py::test_lint_checks_derived_fields_and_structural_zeros",
        )
    ),
    "datasets[].derived[].name": Enforced(
        (
            "tests/records/test_structural_zeros.py::test_lint_checks_derived_fields_and_structural_zeros",
        )
    ),
    "datasets[].derived[].title": Descriptive(
        "the derived category's listing", _text("datasets", 1, "derived", 0, "title")
    ),
    "datasets[].derived[].description": Descriptive(
        "the derived category's listing", _text("datasets", 1, "derived", 0, "description")
    ),
    "datasets[].derived[].when": Enforced(
        (
            "tests/records/test_structural_zeros.py::test_derived_flags_and_bands_give_each_record_its_category",
        )
    ),
    "datasets[].derived[].categories": Enforced(
        (
            "tests/records/test_structural_zeros.py::test_lint_checks_derived_fields_and_structural_zeros",
            "tests/records/test_structural_zeros.py::test_derived_flags_and_bands_give_each_record_its_category",
        )
    ),
    "datasets[].derived[].categories[].value": Enforced(
        (
            "tests/records/test_structural_zeros.py::test_lint_checks_derived_fields_and_structural_zeros",
            "tests/records/test_structural_zeros.py::test_derived_flags_and_bands_give_each_record_its_category",
        )
    ),
    "datasets[].derived[].categories[].when": Enforced(
        (
            "tests/records/test_structural_zeros.py::test_lint_checks_derived_fields_and_structural_zeros",
            "tests/records/test_structural_zeros.py::test_derived_flags_and_bands_give_each_record_its_category",
        )
    ),
    "datasets[].derived[].otherwise": Enforced(
        (
            "tests/records/test_structural_zeros.py::test_lint_checks_derived_fields_and_structural_zeros",
            "tests/records/test_structural_zeros.py::test_derived_flags_and_bands_give_each_record_its_category",
        )
    ),
    "datasets[].submission_schedule": Enforced(
        ("tests/records/test_quality.py::test_a_late_submission_warns_with_the_days_late",)
    ),
    "datasets[].submission_schedule.due": Enforced(
        (
            "tests/records/test_quality.py::test_a_late_submission_warns_with_the_days_late",
            "tests/records/test_quality.py::test_lint_knows_the_submission_schedule",
        )
    ),
    "datasets[].structural_zeros": Enforced(
        (
            "tests/records/test_structural_zeros.py::test_a_record_in_a_structural_zero_is_refused",
            "tests/aggregation/test_protection.py::test_structural_zeros_are_published_and_protect_nothing",
        )
    ),
    "rules": Enforced(RULE_TESTS),
    "disclosure": Enforced((API + "test_an_agreement_without_a_minimum_cell_size_is_refused",)),
    "disclosure.methods": Enforced(
        (
            "tests/indicators/test_dp_releases.py::test_a_method_the_agreement_does_not_allow_is_refused",
        )
    ),
    "disclosure.min_cell_size": Enforced(
        (
            LINT + "test_a_missing_minimum_cell_size_is_refused",
            LINT + "test_k_below_the_floor",
            "tests/policy/test_min_cell_size.py::test_the_strictest_stated_minimum_applies",
        )
    ),
    "disclosure.rounding": Enforced(
        ("tests/aggregation/test_rounding.py::test_rounded_release_is_audited_as_intervals",)
    ),
    "disclosure.top_code_percent": Enforced(
        ("tests/aggregation/test_rounding.py::test_top_and_bottom_coding",)
    ),
    "disclosure.bottom_code_percent": Enforced(
        ("tests/aggregation/test_rounding.py::test_top_and_bottom_coding",)
    ),
    "disclosure.privacy": Enforced(
        (
            "tests/indicators/test_dp_releases.py::test_the_ledger_refuses_a_release_past_the_budget_with_an_explanation",
        )
    ),
    "disclosure.privacy.epsilon_per_release": Enforced(
        (
            "tests/aggregation/test_dp_release.py::test_planned_loss_never_exceeds_the_release_budget",
        )
    ),
    "disclosure.privacy.epsilon_per_period": Enforced(
        (
            "tests/indicators/test_budget_preview.py::"
            "test_the_budgets_follow_the_agreement_version_in_force",
            "tests/indicators/test_dp_releases.py::test_the_ledger_refuses_a_release_past_the_budget_with_an_explanation",
            LINT + "test_privacy_and_linkage_consistency",
        )
    ),
    "disclosure.privacy.period": Enforced(("tests/indicators/test_ledger.py::test_periods",)),
    "disclosure.privacy.max_contributions": Enforced(
        (
            "tests/aggregation/test_dp_release.py::"
            "test_privacy_map_is_the_planned_loss_and_scales_with_contributions",
            "tests/aggregation/test_dp_release.py::"
            "test_a_person_with_many_records_moves_the_table_by_at_most_the_bound",
        )
    ),
    "disclosure.privacy.max_share_per_release": Enforced(
        (
            "tests/indicators/test_budget_preview.py::"
            "test_the_budgets_follow_the_agreement_version_in_force",
            "tests/indicators/test_ledger.py::test_a_budget_follows_the_agreement_version_in_force",
            "tests/indicators/test_ledger.py::"
            "test_a_charge_above_the_agreements_share_is_refused_and_nothing_is_charged",
            LINT + "test_a_share_cap_below_the_loss_of_one_release_is_refused",
        )
    ),
    "linkage": Enforced(
        ("tests/records/test_linkage.py::test_same_person_from_two_partners_links",)
    ),
    "linkage.allowed": Enforced(
        (LINT + "test_privacy_and_linkage_consistency", "tests/policy/cases/linkage.yaml#"),
    ),
    "linkage.datasets": Enforced(
        (LINT + "test_privacy_and_linkage_consistency", "tests/policy/cases/linkage.yaml#"),
    ),
    "retention": Enforced(
        ("tests/records/test_retention.py::test_termination_then_grace_period_then_shredding",)
    ),
    "retention.grace_period_days": Enforced(
        ("tests/records/test_retention.py::test_termination_then_grace_period_then_shredding",)
    ),
    "withdrawal": Enforced(
        (WITHDRAWAL + "test_an_amendment_that_allows_withdrawal_governs_earlier_submissions",)
    ),
    "withdrawal.allowed": Enforced(
        (WITHDRAWAL + "test_withdrawal_not_allowed_is_refused_and_changes_nothing",)
    ),
    "withdrawal.notice_days": Enforced(
        (
            WITHDRAWAL + "test_without_notice_a_withdrawal_is_immediate",
            WITHDRAWAL + "test_notice_days_schedule_the_withdrawal",
            WITHDRAWAL + "test_a_scheduled_withdrawal_leaves_scope_exactly_at_its_effective_time",
            WITHDRAWAL + "test_releases_use_it_until_the_effective_time_and_not_after",
            WITHDRAWAL + "test_purge_records_the_effect_then_shreds_after_the_grace_period",
            WITHDRAWAL + "test_the_agreement_ending_stops_use_at_once_despite_a_notice",
        )
    ),
    "publication_review": Enforced(
        (
            REVIEW + "test_a_held_release_is_unreadable_by_recipients_on_every_read_path",
            REVIEW + "test_the_providers_data_manager_reviews_what_changed_and_approves",
            REVIEW + "test_an_objection_leaves_the_release_unpublished_and_a_new_request_follows",
            REVIEW + "test_a_held_dp_release_has_charged_the_budget",
            "tests/agreements/test_api.py::test_odrl_export_carries_the_review_term",
        )
    ),
    "publication_review.required": Enforced(
        (
            REVIEW + "test_seeded_releases_under_review_were_approved_and_are_published",
            LINT + "test_the_review_term_is_checked",
        )
    ),
    "publication_review.window_days": Enforced(
        (
            REVIEW + "test_the_window_passes_under_publish",
            "tests/policy/test_review.py::test_every_silent_reviewer_must_be_past_its_window",
            LINT + "test_the_review_term_is_checked",
        )
    ),
    "publication_review.on_timeout": Enforced(
        (
            REVIEW + "test_the_window_passes_under_publish",
            REVIEW + "test_the_window_passes_under_hold",
            "tests/test_cli_commands.py::test_releases_publish_due",
            LINT + "test_the_review_term_is_checked",
        )
    ),
    # Accepted and ignored before the structured term; stored versions are held to it
    # (LINT + "test_a_stored_version_with_the_boolean_is_held_to_it_with_the_documented_defaults").
    "publication_review_by_provider": Refused(
        "superseded-term", lambda doc: doc.__setitem__("publication_review_by_provider", True)
    ),
}

# Rule fields, the same under each kind of rule.
for _kind in ("permission", "prohibition", "obligation"):
    _base = f"rules.{_kind}"
    KEPT.update(
        {
            _base: Enforced(RULE_TESTS),
            f"{_base}[].id": Enforced((LINT + "test_contradictions_and_duplicates",)),
            f"{_base}[].action": Enforced(RULE_TESTS),
            f"{_base}[].target": Enforced((LINT + "test_dead_rules",)),
            f"{_base}[].assignee": Enforced((LINT + "test_dead_rules",)),
            f"{_base}[].constraint": Enforced(RULE_TESTS),
            f"{_base}[].constraint[].leftOperand": Enforced(RULE_TESTS),
            f"{_base}[].constraint[].operator": Enforced(RULE_TESTS),
            f"{_base}[].constraint[].rightOperand": Enforced((POLICY,)),
            f"{_base}[].description": Descriptive(
                "the ODRL export",
                _text("rules", _kind, 0, "description"),
            ),
        }
    )


def schema_fields() -> Iterator[str]:
    """Every field path of the published agreement schema (``[]`` for list items)."""
    schema = AgreementDocument.model_json_schema(by_alias=True)
    defs = schema.get("$defs", {})

    def walk(node: dict[str, Any], path: str, seen: frozenset[str]) -> Iterator[str]:
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            if name not in seen:
                yield from walk(defs[name], path, seen | {name})
            return
        for key in ("anyOf", "oneOf", "allOf"):
            for sub in node.get(key, []):
                yield from walk(sub, path, seen)
        if isinstance(node.get("items"), dict):
            yield from walk(node["items"], path + "[]", seen)
        for name, sub in node.get("properties", {}).items():
            here = f"{path}.{name}" if path else name
            yield here
            yield from walk(sub, here, seen)

    seen: set[str] = set()
    for path in walk(schema, "", frozenset()):
        if path not in seen:
            seen.add(path)
            yield path


def _demo() -> dict[str, Any]:
    text = (resources.files("demo") / "agreements" / "district.yaml").read_text()
    return dict(yaml.safe_load(text))


def test_every_schema_field_is_accounted_for() -> None:
    fields = list(schema_fields())
    missing = [f for f in fields if f not in KEPT]
    assert not missing, f"fields neither enforced, refused nor descriptive: {missing}"
    stale = sorted(set(KEPT) - set(fields))
    assert not stale, f"fields this test names that the schema no longer has: {stale}"


def _exists(reference: str) -> bool:
    if "#" in reference:
        path, case = reference.split("#", 1)
        spec = yaml.safe_load((ROOT / path).read_text())
        names = {c["name"] for c in spec["cases"]}
        return case in names if case else bool(names)
    path, function = reference.split("::", 1)
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return callable(getattr(module, function, None))


@pytest.mark.parametrize(
    "path", sorted(p for p, k in KEPT.items() if isinstance(k, Enforced)), ids=str
)
def test_each_enforced_field_names_tests_that_exist(path: str) -> None:
    kept = KEPT[path]
    assert isinstance(kept, Enforced) and kept.tests
    for reference in kept.tests:
        assert _exists(reference), f"{path}: no test {reference}"


@pytest.mark.parametrize(
    "path", sorted(p for p, k in KEPT.items() if isinstance(k, Refused)), ids=str
)
def test_each_refused_field_is_refused_by_lint(path: str) -> None:
    kept = KEPT[path]
    assert isinstance(kept, Refused)
    doc = _demo()
    assert not lint(AgreementDocument.model_validate(doc), codelists=CATALOG)
    changed = copy.deepcopy(doc)
    kept.set(changed)
    findings = lint(AgreementDocument.model_validate(changed), codelists=CATALOG)
    assert kept.code in {f.code for f in findings}, findings


def test_descriptive_fields_are_part_of_what_every_party_approves() -> None:
    doc = _demo()
    before = AgreementDocument.model_validate(doc).content_hash()
    for path, kept in KEPT.items():
        if not isinstance(kept, Descriptive):
            continue
        changed = copy.deepcopy(doc)
        kept.set(changed)
        assert changed != doc, f"{path}: the setter changes nothing in the demo agreement"
        after = AgreementDocument.model_validate(changed).content_hash()
        assert after != before, f"{path} is not in the approved content"


ACTIONS: dict[str, Enforced] = {
    action: Enforced(("tests/policy/test_cases.py::test_cases_cover_the_whole_vocabulary",))
    for action in ("submit", "compute", "publish", "link", "read", "export_records", "redisclose")
}
# The two duties are kept by the services that owe them.
ACTIONS["notify"] = Enforced(
    (
        "tests/notifications/test_notify_obligation.py::"
        "test_a_notify_obligation_naming_events_and_parties_lints_clean_and_is_enforced",
        "tests/notifications/test_notify_obligation.py::"
        "test_lint_refuses_a_notify_obligation_it_cannot_enforce",
        "tests/notifications/test_outbox.py::"
        "test_a_notify_obligation_is_recorded_for_a_party_without_a_webhook",
    )
)
ACTIONS["delete"] = Enforced(
    ("tests/records/test_retention.py::test_termination_then_grace_period_then_shredding",)
)


def test_every_action_of_the_vocabulary_is_decided_or_a_kept_duty() -> None:
    missing = sorted(set(vocab.ACTIONS) - set(ACTIONS))
    assert not missing, f"actions an agreement accepts that nothing keeps: {missing}"
    for action, kept in ACTIONS.items():
        for reference in kept.tests:
            assert _exists(reference), f"{action}: no test {reference}"
