"""Seed the demo initiative into an empty database, through the same services the API uses.

Idempotent: if the backbone organization exists, nothing is done. Client credentials are written
to ``var/demo-credentials.json`` (mode 0600) so that a new user can call the API at once.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import polars as pl
import yaml
from sqlalchemy.orm import Session

from aggregation import definitions, releases, review
from aggregation.definition import IndicatorDefinition
from agreements import codelist_service
from agreements import service as agreements
from agreements.codelists import Code, CodeListCatalog, CodeListIn, ResolvedCodeList
from agreements.parse import parse_document
from agreements.service import PolicyCache
from core.clock import utcnow
from core.context import RequestContext
from core.ids import new_id
from core.keys import MasterKey
from demo.generator import DemoData, generate
from demo.initiative import CLIENTS, CODE_LISTS, ORGANIZATIONS, PEOPLE
from identity import people as people_service
from identity import service as identity
from identity.models import Client, Organization
from policy.model import Principal
from policy.review import APPROVE
from records import service as records
from records.intake import IntakeLimits
from results import service as results
from results.documents import (
    ActionIn,
    PartnerRoleIn,
    ResultIn,
    StoryIn,
    StoryVersionIn,
    StrategyIn,
)

AGREEMENT_FILES = ("district.yaml", "health.yaml", "early-learning.yaml")
REVIEWERS = {"health": "health-data-manager"}
SUBMITTERS = {
    "kindergarten_readiness": "district-sis",
    "attendance": "district-sis",
    "births": "health-vitals",
    "prek_enrollment": "elnet-enrollment",
}


def code_lists() -> list[CodeListIn]:
    """The demo's shared code lists, as the backbone defines them."""
    return [
        CodeListIn(
            id=slug,
            title=title,
            kind=kind,
            standard=standard,
            codes=[Code(code=c) for c in codes],
        )
        for slug, title, kind, standard, codes in CODE_LISTS
    ]


def code_list_versions() -> dict[str, ResolvedCodeList]:
    """Version 1 of each demo code list, as a freshly seeded service holds it (for compiling or
    linting the demo agreements without a database)."""
    return {
        f"{body.id}@1": ResolvedCodeList(
            id=body.id,
            version=1,
            title=body.title,
            kind=body.kind,
            codes=tuple(c.code for c in body.codes),
            standard=body.standard,
        )
        for body in code_lists()
    }


def code_list_catalog() -> CodeListCatalog:
    """What lint knows of the demo code lists on a freshly seeded service."""
    versions = code_list_versions()
    return CodeListCatalog(versions, {found.id: found.version for found in versions.values()})


def agreement_texts() -> dict[str, str]:
    base = resources.files("demo") / "agreements"
    return {name: (base / name).read_text() for name in AGREEMENT_FILES}


def indicator_definitions() -> list[IndicatorDefinition]:
    text = (resources.files("demo") / "indicators" / "indicators.yaml").read_text()
    return [IndicatorDefinition.model_validate(item) for item in yaml.safe_load(text)]


def demo_releases() -> list[tuple[str, releases.ReleaseRequest]]:
    """(indicator, request) of every release the demo publishes, in order: its dimensions and,
    when stated, its method (else the indicator's own)."""
    text = (resources.files("demo") / "indicators" / "releases.yaml").read_text()
    return [
        (
            str(r["indicator"]),
            releases.ReleaseRequest(dimensions=tuple(r["dimensions"]), method=r.get("method")),
        )
        for r in yaml.safe_load(text)
    ]


def demo_results() -> list[dict[str, Any]]:
    """The demo's results with their stories, strategies, partners and action plans."""
    text = (resources.files("demo") / "results.yaml").read_text()
    items: list[dict[str, Any]] = yaml.safe_load(text)
    return items


def _ctx(session: Session, client_id: str | None) -> RequestContext:
    if client_id is None:
        return RequestContext(new_id("seed"), utcnow(), None)
    client = session.get(Client, client_id)
    assert client is not None
    org = session.get(Organization, client.organization_id)
    assert org is not None
    principal = Principal(client.id, org.id, org.kind, client.scope_set)
    return RequestContext(new_id("seed"), utcnow(), principal)


def is_seeded(session: Session) -> bool:
    return session.get(Organization, "backbone") is not None


def _submit_frame(
    session: Session,
    master: MasterKey,
    policies: PolicyCache,
    dataset: str,
    frame: pl.DataFrame,
    period: str | None,
) -> records.Receipt:
    client = SUBMITTERS[dataset]
    buf = io.BytesIO()
    frame.write_csv(buf)
    with tempfile.TemporaryDirectory() as scratch:
        body = Path(scratch) / "body.csv"
        body.write_bytes(buf.getvalue())
        req = records.SubmissionRequest(
            dataset=dataset,
            body=body,
            content_type="text/csv",
            content_encoding=None,
            body_sha256=records.sha256_file(body),
            limits=IntakeLimits(max_bytes=1 << 30),
            scratch=Path(scratch) / "decoded",
            period=period,
        )
        receipt, _ = records.submit(
            session, _ctx(session, client), master, policies.get(session), req
        )
    return receipt


def seed(
    session: Session, master: MasterKey, credentials_path: Path, data: DemoData | None = None
) -> dict[str, Any]:
    """Create the demo initiative. Flushes only; the caller commits."""
    if is_seeded(session):
        return {"seeded": False}
    admin = _ctx(session, None)
    for org_id, name, kind in ORGANIZATIONS:
        identity.create_organization(session, admin, org_id, name, kind)
    credentials = []
    for client_id, org_id, role, description in CLIENTS:
        issued = identity.create_client(
            session, admin, organization_id=org_id, name=description, role=role, client_id=client_id
        )
        credentials.append(
            {
                "organization": org_id,
                "role": role,
                "description": description,
                "client_id": client_id,
                "client_secret": issued.secret,
                "scopes": sorted(issued.client.scope_set),
            }
        )
    people = []
    for username, org_id, role, name in PEOPLE:
        enrolled = people_service.create_person(
            session, admin, master, organization_id=org_id, username=username, role=role, name=name
        )
        people.append(
            {
                "organization": org_id,
                "role": role,
                "name": name,
                "username": username,
                "password": enrolled.password,
                "totp_secret": enrolled.totp_secret,
                "totp_uri": enrolled.provisioning_uri,
            }
        )
    # Each agreement is drafted by the backbone and approved by every party's data manager.
    approvers = {
        "district": "district-data-manager",
        "health": "health-data-manager",
        "early-learning": "elnet-data-manager",
        "backbone": "backbone-manager",
    }
    # The code lists the agreements refer to come first: a reference must resolve.
    for body in code_lists():
        codelist_service.create(session, _ctx(session, "backbone-manager"), body)
    for text in agreement_texts().values():
        document = parse_document(text)
        version = agreements.create(session, _ctx(session, "backbone-manager"), document)
        for party in document.parties:
            agreements.approve(
                session,
                _ctx(session, approvers[party.org]),
                document.uid,
                version.version,
                version.content_hash,
            )
    policies = PolicyCache()
    data = data or generate()
    counts = {}
    for dataset, frame in (
        ("kindergarten_readiness", data.kindergarten_readiness),
        ("attendance", data.attendance),
        ("births", data.births),
        ("prek_enrollment", data.prek_enrollment),
    ):
        period_col = "birth_year" if dataset == "births" else "school_year"
        for period in sorted(frame.get_column(period_col).unique().to_list()):
            part = frame.filter(pl.col(period_col) == period)
            _submit_frame(session, master, policies, dataset, part, period)
        counts[dataset] = frame.height
    manager = _ctx(session, "backbone-manager")
    for definition in indicator_definitions():
        definitions.define(session, manager, policies.get(session), definition)
    for indicator_id, request in demo_releases():
        release, _ = releases.create_release(
            session, manager, master, policies.get(session), indicator_id, request
        )
        # The demo starts with its dashboards full: every reviewer approves what was seeded.
        for item in review.reviews_of(session, release.id):
            review.decide(
                session,
                _ctx(session, REVIEWERS[item.organization_id]),
                release.id,
                APPROVE,
                "Seeded with the demo initiative.",
            )
    seed_results(session)
    write_credentials(credentials_path, credentials, people)
    return {"seeded": True, "records": counts, "credentials": str(credentials_path)}


def seed_results(session: Session) -> None:
    """Seed the demo's results through the results services, each story by its author and
    each partner's role by the client named for it."""
    manager = _ctx(session, "backbone-manager")
    own = ("id", "title", "description", "population", "geography", "public", "indicators")
    for item in demo_results():
        result = results.create_result(
            session, manager, ResultIn.model_validate({k: item[k] for k in own if k in item})
        )
        for story in item.get("stories", ()):
            author = _ctx(session, story["author"])
            first, *later = story["versions"]
            attached = {k: story[k] for k in ("audience", "indicator", "release") if k in story}
            view = results.add_story(
                session, author, result.id, StoryIn.model_validate({**first, **attached})
            )
            for version in later:
                results.add_story_version(
                    session,
                    _ctx(session, story["author"]),
                    view.id,
                    StoryVersionIn.model_validate(version),
                )
        for strategy in item.get("strategies", ()):
            results.add_strategy(session, manager, result.id, StrategyIn.model_validate(strategy))
        for partner in item.get("partners", ()):
            results.set_partner_role(
                session,
                _ctx(session, partner["by"]),
                result.id,
                partner["organization"],
                PartnerRoleIn.model_validate(
                    {k: partner[k] for k in ("role", "commitments") if k in partner}
                ),
            )
        for action in item.get("actions", ()):
            results.add_action(session, manager, result.id, ActionIn.model_validate(action))


def write_credentials(
    path: Path, credentials: list[dict[str, Any]], people: list[dict[str, Any]] | None = None
) -> None:
    """Write the demo's client credentials and, under ``"people"``, its people's sign-in details
    (username, password, TOTP secret and ``otpauth://`` URI for an authenticator app)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"clients": credentials, "people": people or []}, fh, indent=2)
        fh.write("\n")
