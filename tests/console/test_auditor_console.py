"""The auditor's console: the access log with filters and pages, the latest checkpoint, an
export that verifies offline, inclusion proofs; through the audit services, every view audited
naming the person, and nothing for a person whose role or organization may not read the log."""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

from sqlalchemy import select

from audit.merkle import verify_inclusion
from audit.models import AuditEvent
from audit.note import VerifierKey, read_checkpoint
from audit.verify import verify_export
from identity.models import Person
from tests.console.conftest import sign_in


def _person_id(session, username: str) -> str:
    return session.scalar(select(Person.id).where(Person.username == username))


def _last_events(session, n: int = 5) -> list[AuditEvent]:
    session.expire_all()
    return list(session.scalars(select(AuditEvent).order_by(AuditEvent.idx.desc()).limit(n)))


def _csrf(text: str) -> str:
    return text.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def test_the_home_page_names_the_person_and_links_only_to_what_their_role_reaches(
    client, clock, auditor, district
):
    assert sign_in(client, clock, auditor).status_code == 303
    home = client.get("/console")
    assert home.status_code == 200
    assert "Avery Chen" in home.text
    assert "Office of the County Auditor" in home.text
    assert "<dd>auditor</dd>" in home.text  # the role
    for path in ("/console/audit", "/console/audit/checkpoint", "/console/audit/proof"):
        assert f'href="{path}"' in home.text
    assert home.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in home.headers["content-security-policy"]
    client.post("/sign-out", data={"csrf": _csrf(home.text)})
    assert sign_in(client, clock, district).status_code == 303
    home = client.get("/console")
    assert "Dana Whitfield" in home.text
    assert 'href="/console/audit' not in home.text
    assert 'href="/console/agreements"' in home.text  # the data managers' console


def test_the_access_log_filters_and_pages_through_the_audit_service(client, clock, auditor):
    sign_in(client, clock, auditor)
    r = client.get("/console/audit", params={"organization": "district", "action": "submission.*"})
    assert r.status_code == 200, r.text
    rows = re.findall(r"<tr>\s*<td><a href=\"/console/audit/proof\?index=(\d+)\"", r.text)
    assert rows, r.text
    assert "submission.create" in r.text
    body = r.text.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    assert "agreement.approve" not in body and ">health<" not in body
    # Pages of 50, oldest first, with a link to the next.
    r = client.get("/console/audit")
    indexes = [int(i) for i in re.findall(r'proof\?index=(\d+)"', r.text)]
    assert indexes == list(range(50))
    next_link = re.search(r'href="(/console/audit\?after=49)" rel="next"', r.text)
    assert next_link, r.text
    r = client.get(html.unescape(next_link.group(1)))
    assert [int(i) for i in re.findall(r'proof\?index=(\d+)"', r.text)][:3] == [50, 51, 52]
    assert "First page" in r.text
    # Decision and outcome filters; times from a browser's datetime-local are UTC.
    r = client.get("/console/audit", params={"decision": "permit", "outcome": "succeeded"})
    assert r.status_code == 200 and "<td>permit</td>" in r.text
    r = client.get("/console/audit", params={"since": "2999-01-01T00:00", "until": ""})
    assert "No event matches these filters." in r.text


def test_a_wrong_filter_is_a_clear_page_and_audited_as_rejected(client, clock, auditor, session):
    sign_in(client, clock, auditor)
    person = _person_id(session, auditor.username)
    for params, says in (
        ({"action": "nonsense"}, "names no action of the audit log"),
        ({"since": "yesterday"}, "since must be a date and time"),
        ({"outcome": "maybe"}, "outcome must be one of"),
        ({"since": "2026-01-02T00:00", "until": "2026-01-01T00:00"}, "until must be later"),
    ):
        r = client.get("/console/audit", params=params)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("text/html")
        assert says in html.unescape(r.text)
        event = _last_events(session, 1)[0]
        assert (event.action, event.outcome, event.client_id) == (
            "audit.read",
            "rejected",
            f"person:{person}",
        )


def test_every_page_view_is_audited_naming_the_person(client, clock, auditor, session):
    sign_in(client, clock, auditor)
    person = f"person:{_person_id(session, auditor.username)}"
    sign_in_event = _last_events(session, 1)[0]
    assert (sign_in_event.action, sign_in_event.client_id) == ("person.sign_in", person)
    for path, action in (
        ("/console/audit?organization=district", "audit.read"),
        ("/console/audit/checkpoint", "audit.checkpoint.read"),
        ("/console/audit/proof?index=3", "audit.proof.inclusion"),
    ):
        assert client.get(path).status_code == 200
        event = _last_events(session, 1)[0]
        assert (event.action, event.client_id, event.organization_id) == (action, person, "auditor")
        assert event.decision == "permit"
    size = int(re.search(r'id="tree-size">(\d+)<', client.get("/console/audit/checkpoint").text)[1])
    assert client.get(f"/console/audit/export?tree_size={size}").status_code == 200
    event = _last_events(session, 1)[0]
    assert (event.action, event.client_id) == ("audit.export", person)
    assert client.get(f"/console/audit/checkpoints/{size}").status_code == 200
    event = _last_events(session, 1)[0]
    assert (event.action, event.client_id, event.resource_id) == (
        "audit.checkpoint.read",
        person,
        str(size),
    )


def test_the_export_up_to_the_checkpoint_verifies_offline(client, clock, auditor, tmp_path: Path):
    sign_in(client, clock, auditor)
    page = client.get("/console/audit/checkpoint")
    size = int(re.search(r'id="tree-size">(\d+)<', page.text)[1])
    command = html.unescape(re.search(r'<pre id="verify-command"><code>(.*?)</code>', page.text)[1])
    assert command == (
        f"backbone audit verify audit-{size}.ndjson --checkpoint audit-{size}.checkpoint "
        "--public-key backbone-audit.vkey"
    )
    root = re.search(r'id="root-hash">([^<]+)<', page.text)[1]
    exported = client.get(f"/console/audit/export?tree_size={size}")
    assert exported.headers["content-disposition"] == f'attachment; filename="audit-{size}.ndjson"'
    note = client.get(f"/console/audit/checkpoints/{size}")
    assert note.headers["content-disposition"] == f'attachment; filename="audit-{size}.checkpoint"'
    vkey = client.get("/v1/audit/public-key?format=vkey").text
    path = tmp_path / f"audit-{size}.ndjson"
    path.write_bytes(exported.content)
    key = VerifierKey.parse(vkey)
    checkpoint = read_checkpoint(note.text, key)
    assert checkpoint.size == size
    report = verify_export(path, [checkpoint])
    assert report.ok and report.entries == size, report.as_dict()
    assert root in note.text


def test_an_inclusion_proof_and_what_it_proves(client, clock, auditor):
    sign_in(client, clock, auditor)
    r = client.get("/console/audit/proof")
    assert r.status_code == 200 and "Look up the proof" in r.text
    r = client.get("/console/audit/proof", params={"index": "7"})
    assert r.status_code == 200, r.text
    assert "Event 7 in the tree of size" in r.text
    assert "contains this event, as it is, at index 7" in r.text
    # The page's path leads from the leaf to the signed root it names (RFC 9162).
    size = int(re.search(r"Event 7 in the tree of size (\d+)", r.text)[1])
    leaf = re.search(r'id="leaf-hash">([^<]+)<', r.text)[1]
    path = re.findall(r"<tr><td>\d+</td><td><code>([^<]+)</code>", r.text)
    root = re.search(r"Root hash</dt><dd><code>([^<]+)<", r.text)[1]
    assert path
    assert verify_inclusion(
        7, size, base64.b64decode(leaf), [base64.b64decode(h) for h in path], base64.b64decode(root)
    )
    proof = client.get("/console/audit/proof", params={"index": "7", "format": "json"}).json()
    assert proof["index"] == 7 and proof["leaf_hash"] == leaf
    assert proof["entry"]["index"] == 7
    assert client.get("/console/audit/proof", params={"index": "99999999"}).status_code == 404
    assert client.get("/console/audit/proof", params={"index": "x"}).status_code == 422


def test_a_person_of_another_organization_is_refused_whatever_the_url(
    client, clock, district, session
):
    sign_in(client, clock, district)
    person = f"person:{_person_id(session, district.username)}"
    for path, action in (
        ("/console/audit", "audit.read"),
        ("/console/audit?organization=district", "audit.read"),
        ("/console/audit/checkpoint", "audit.checkpoint.read"),
        ("/console/audit/export?tree_size=5", "audit.export"),
        ("/console/audit/checkpoints/5", "audit.checkpoint.read"),
        ("/console/audit/proof?index=3", "audit.proof.inclusion"),
    ):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 403, (path, r.text)
        assert r.headers["content-type"].startswith("text/html")
        assert "audit:read" in r.text
        event = _last_events(session, 1)[0]
        assert (event.action, event.outcome, event.client_id) == (action, "denied", person)


def test_a_role_without_audit_read_in_an_auditor_organization_is_refused_too(
    client, clock, session, settings
):
    # The auditor organization's dashboard role (indicators:read) is not an auditor.
    from core.context import RequestContext
    from identity import people
    from identity.people import totp_code
    from tests.conftest import MASTER

    enrolled = people.create_person(
        session,
        RequestContext("req_test", clock(), None),
        MASTER,
        organization_id="auditor",
        username="dash.viewer",
        role="dashboard",
    )
    session.commit()
    clock.advance(seconds=31)
    r = client.post(
        "/sign-in",
        data={
            "username": "dash.viewer",
            "password": enrolled.password,
            "code": totp_code(enrolled.totp_secret, clock()),
        },
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert client.get("/console/audit").status_code == 403


def test_no_page_holds_a_password_or_a_totp_secret(client, clock, auditor, demo_people):
    secrets_ = [v for p in demo_people.values() for v in (p.password, p.totp_secret)]
    pages = [client.get("/sign-in").text]
    pages.append(sign_in(client, clock, auditor, password="wrong-password-1").text)
    sign_in(client, clock, auditor)
    for path in (
        "/console",
        "/console/audit",
        "/console/audit?action=person.*",
        "/console/audit/checkpoint",
        "/console/audit/proof?index=1",
    ):
        r = client.get(path)
        assert r.status_code == 200
        pages.append(r.text)
    size = int(re.search(r'id="tree-size">(\d+)<', pages[-2])[1])
    pages.append(client.get(f"/console/audit/export?tree_size={size}").text)
    for text in pages:
        for secret in secrets_:
            assert secret not in text
    # Nor does the export carry anything of the sign-in but who and when.
    lines = [json.loads(line) for line in pages[-1].splitlines()]
    assert any(e.get("action") == "person.sign_in" for e in lines)
