"""The auditor's API over HTTP, and a partner checking its receipt without trusting the operator."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

from typer.testing import CliRunner

from audit import merkle
from audit.canonical import EXPORT_COLUMNS, b64, canonical_bytes, unb64
from audit.note import VerifierKey, open_checkpoint, read_checkpoint
from audit.service import AuditRecord, record
from audit.verify import verify_export, verify_proof
from cli.audit import audit_app
from core.context import RequestContext
from policy.model import Basis, Decision, Effect, FailedConstraint, Principal

CSV = (
    "student_id,school_year,neighborhood,race_ethnicity,ready,assessment_score\n"
    "ZZ00000001,2025-26,Ashland,Asian,true,81\n"
    "ZZ00000002,2025-26,Ashland,White,false,52\n"
)
AGREEMENT = "district-early-learning-outcomes"


def _submit(api, body: str = CSV) -> dict:
    r = api.post(
        "/v1/datasets/kindergarten_readiness/submissions",
        as_="district-sis",
        content=body.encode(),
        headers={"Content-Type": "text/csv"},
    )
    assert r.status_code == 201, r.text
    return r.json()


def _key(client) -> VerifierKey:
    r = client.get("/v1/audit/public-key")  # no token: the key is public
    assert r.status_code == 200, r.text
    doc = r.json()
    key = VerifierKey.parse(doc["vkey"])
    assert VerifierKey.parse(doc["pem"]).public == key.public
    assert VerifierKey.parse(json.dumps(doc)).public == key.public
    assert client.get("/v1/audit/public-key", params={"format": "vkey"}).text.strip() == doc["vkey"]
    assert "BEGIN PUBLIC KEY" in client.get("/v1/audit/public-key", params={"format": "pem"}).text
    return key


def _events(api, **params) -> list[dict]:
    r = api.get("/v1/audit/events", as_="county-auditor", params={"limit": 1000, **params})
    assert r.status_code == 200, r.text
    return r.json()["items"]


def _last_event(api) -> dict:
    checkpoint = api.get("/v1/audit/checkpoints/latest", as_="county-auditor").json()
    return _events(api, after=checkpoint["tree_size"] - 2)[-1]


def _deny_event(session, clock) -> None:
    """A policy denial as the records service logs it (with its decision and failed constraint)."""
    decision = Decision(
        Effect.DENY,
        Basis.NOT_PERMITTED,
        "submit",
        failed_constraints=(
            FailedConstraint(AGREEMENT, 1, "p-submit", "dataset", "eq", "births", "x"),
        ),
        agreements=((AGREEMENT, 1),),
    )
    ctx = RequestContext("req-denied", clock(), Principal("district-sis", "district", "partner"))
    record(
        session,
        ctx,
        AuditRecord(
            action="submission.create",
            outcome="denied",
            resource_type="dataset",
            resource_id="births",
            decision=decision,
        ),
    )


def test_events_filters_and_pagination(api, session, clock):
    receipt = _submit(api)
    start = receipt["audit_index"]
    _deny_event(session, clock)

    everything = _events(api, after=start - 1)
    assert [e["index"] for e in everything] == list(range(start, start + len(everything)))
    for e in everything:
        assert merkle.leaf_hash(canonical_bytes(e)) == unb64(e["leaf_hash"])

    mine = _events(api, after=start - 1, organization="district")
    assert mine and all(e["organization"] == "district" for e in mine)
    assert {e["client"] for e in _events(api, after=start - 1, client="district-sis")} == {
        "district-sis"
    }
    subs = _events(api, after=start - 1, action="submission.*")
    assert {e["action"] for e in subs} == {"submission.create"}
    # An exact filter is a whole action name; a misspelt one is an error, not an empty page.
    for wrong in ("submission", "submision.create", "nothing.*"):
        r = api.get("/v1/audit/events", as_="county-auditor", params={"action": wrong})
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert "submission.*" in r.json()["detail"]
    denials = _events(api, after=start - 1, decision="deny")
    assert denials and all(e["decision"] == "deny" for e in denials)
    assert any(e["resource_id"] == "births" and e["outcome"] == "denied" for e in denials)
    by_agreement = _events(api, after=start - 1, agreement=AGREEMENT)
    assert start in [e["index"] for e in by_agreement]
    assert all(any(a["agreement"] == AGREEMENT for a in e["agreements"]) for e in by_agreement)
    assert _events(api, after=start - 1, agreement="no-such-agreement") == []
    rejected = _events(api, after=start - 1, outcome="denied")
    assert rejected and all(e["outcome"] == "denied" for e in rejected)

    at = everything[0]["at"]
    assert all(e["at"] >= at for e in _events(api, after=start - 1, since=at))
    assert _events(api, after=start - 1, until=at) == []

    # Pagination: pages of 2 follow each other without gaps or repeats.
    seen, after = [], start - 1
    while True:
        r = api.get("/v1/audit/events", as_="county-auditor", params={"after": after, "limit": 2})
        page = r.json()
        seen += [e["index"] for e in page["items"]]
        if page["next"] is None:
            break
        after = page["next"]
    assert seen[: len(everything)] == [e["index"] for e in everything]

    # The reads themselves are in the log.
    reads = _events(api, after=start - 1, action="audit.read")
    assert reads and reads[0]["client"] == "county-auditor" and reads[0]["decision"] == "permit"


def test_bad_filters_are_problems(api):
    for params in ({"decision": "maybe"}, {"outcome": "odd"}, {"limit": 0}, {"since": "yesterday"}):
        r = api.get("/v1/audit/events", as_="county-auditor", params=params)
        assert r.status_code == 422, (params, r.text)
    r = api.get(
        "/v1/audit/events",
        as_="county-auditor",
        params={"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
    )
    assert r.status_code == 422 and r.json()["type"] == "/problems/invalid-input"


def test_only_auditors_read_events_and_exports_and_the_refusals_are_logged(api):
    for client in ("district-sis", "backbone-admin", "auditor-dashboard"):
        for path in ("/v1/audit/events", "/v1/audit/export"):
            r = api.get(path, as_=client)
            assert r.status_code == 403, (client, path, r.text)
            assert r.json()["type"] == "/problems/insufficient-scope"
    assert api.client.get("/v1/audit/events").status_code == 401
    refusals = _events(api, action="audit.*", outcome="denied")
    # Three clients were refused twice each, and each refusal names who was refused.
    assert [e["action"] for e in refusals] == ["audit.read", "audit.export"] * 3
    assert {e["detail"] for e in refusals} == {"insufficient-scope"}
    assert [e["client"] for e in refusals] == [
        c for c in ("district-sis", "backbone-admin", "auditor-dashboard") for _ in range(2)
    ]


def test_checkpoint_latest_is_signed_and_made_on_demand(api, client):
    key = _key(client)
    first = api.get("/v1/audit/checkpoints/latest", as_="county-auditor")
    assert first.status_code == 200, first.text
    doc = first.json()
    cp = open_checkpoint(doc["note"], key)
    assert cp.size == doc["tree_size"]
    assert doc["root_hash"] == b64(cp.root)
    assert cp.origin == doc["origin"] == key.name
    note = api.get(
        "/v1/audit/checkpoints/latest", as_="county-auditor", headers={"Accept": "text/plain"}
    )
    assert note.headers["content-type"].startswith("text/plain")
    later = open_checkpoint(note.text, key)
    # The first read was itself logged, so the log grew and a new checkpoint was made.
    assert later.size > cp.size
    # Partners may read checkpoints; dashboards may not.
    assert api.get("/v1/audit/checkpoints/latest", as_="district-sis").status_code == 200
    r = api.get("/v1/audit/checkpoints/latest", as_="auditor-dashboard")
    assert r.status_code == 403 and r.json()["type"] == "/problems/insufficient-scope"


def test_a_receipt_from_yesterday_verifies_against_todays_checkpoint(api, client, clock, tmp_path):
    key = _key(client)
    receipt = _submit(api)
    index = receipt["audit_index"]
    # Yesterday: the partner fetches and keeps a proof and its checkpoint.
    r = api.get("/v1/audit/proofs/inclusion", as_="district-sis", params={"index": index})
    assert r.status_code == 200, r.text
    yesterday = r.json()
    ok, message = verify_proof(yesterday, key)
    assert ok, message
    assert yesterday["entry"]["resource_id"] == receipt["id"]
    old_cp = open_checkpoint(yesterday["checkpoint"]["note"], key)

    # A day of activity later.
    clock.advance(days=1)
    for _ in range(3):
        _submit(api, CSV.replace("ZZ00000001", "ZZ00000009"))
    api.get("/v1/audit/events", as_="county-auditor")

    r = api.get("/v1/audit/proofs/inclusion", as_="district-sis", params={"index": index})
    today = r.json()
    assert today["tree_size"] > old_cp.size
    ok, message = verify_proof(today, key)
    assert ok, message
    new_cp = open_checkpoint(today["checkpoint"]["note"], key)
    assert new_cp.time - old_cp.time >= timedelta(days=1)
    # ... and today's tree extends yesterday's.
    r = api.get("/v1/audit/proofs/consistency", as_="district-sis", params={"first": old_cp.size})
    assert r.status_code == 200, r.text
    consistency = r.json()
    assert consistency["second"] == new_cp.size or consistency["second"] > old_cp.size
    ok, message = verify_proof(consistency, key, [old_cp])
    assert ok, message

    # The same checks from the command line, offline.
    (tmp_path / "key.vkey").write_text(key.vkey())
    (tmp_path / "proof.json").write_text(json.dumps(today))
    (tmp_path / "old.checkpoint").write_text(old_cp.note)
    (tmp_path / "consistency.json").write_text(
        json.dumps({**consistency, "first_checkpoint": None})
    )
    runner = CliRunner()
    result = runner.invoke(
        audit_app,
        ["verify-proof", str(tmp_path / "proof.json"), "--public-key", str(tmp_path / "key.vkey")],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        audit_app,
        ["verify-proof", str(tmp_path / "consistency.json"), "--public-key", str(tmp_path / "key.vkey"),
         "--checkpoint", str(tmp_path / "old.checkpoint")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output

    # A forged proof, entry or root fails.
    forged = json.loads(json.dumps(today))
    forged["entry"]["counts"]["rows"] = 3000
    assert not verify_proof(forged, key)[0]
    forged = json.loads(json.dumps(today))
    forged["proof"][0] = forged["leaf_hash"]
    assert not verify_proof(forged, key)[0]
    forged = json.loads(json.dumps(today))
    forged["checkpoint"]["note"] = forged["checkpoint"]["note"].replace(
        f"\n{today['tree_size']}\n", f"\n{today['tree_size'] + 1}\n"
    )
    ok, message = verify_proof(forged, key)
    assert not ok and "does not verify" in message
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    result = runner.invoke(
        audit_app,
        ["verify-proof", str(tmp_path / "forged.json"), "--public-key", str(tmp_path / "key.vkey")],
    )
    assert result.exit_code == 1


def test_partners_prove_only_their_own_events(api):
    receipt = _submit(api)
    other = _events(api, after=receipt["audit_index"], organization="auditor")[0]
    r = api.get("/v1/audit/proofs/inclusion", as_="district-sis", params={"index": other["index"]})
    assert r.status_code == 403 and r.json()["type"] == "/problems/object-access-denied"
    r = api.get(
        "/v1/audit/proofs/inclusion", as_="county-auditor", params={"index": other["index"]}
    )
    assert r.status_code == 200
    denied = _events(api, after=other["index"], action="audit.proof.inclusion", outcome="denied")
    assert denied and denied[0]["client"] == "district-sis"
    assert (
        api.get(
            "/v1/audit/proofs/inclusion", as_="auditor-dashboard", params={"index": 0}
        ).status_code
        == 403
    )


def test_proof_parameters_are_checked(api):
    size = api.get("/v1/audit/checkpoints/latest", as_="county-auditor").json()["tree_size"]
    cases = [
        ("/v1/audit/proofs/inclusion", {"index": 10**9}, 404),
        ("/v1/audit/proofs/inclusion", {"index": -1}, 422),
        ("/v1/audit/proofs/inclusion", {"index": 0, "tree_size": 10**9}, 422),
        ("/v1/audit/proofs/inclusion", {"index": size - 1, "tree_size": size - 1}, 422),
        ("/v1/audit/proofs/consistency", {"first": 0}, 422),
        ("/v1/audit/proofs/consistency", {"first": 2, "second": 1}, 422),
        ("/v1/audit/proofs/consistency", {"first": 1, "second": 10**9}, 422),
        ("/v1/audit/export", {"tree_size": 10**9}, 422),
        ("/v1/audit/export", {"format": "xml"}, 422),
    ]
    for path, params, status in cases:
        r = api.get(path, as_="county-auditor", params=params)
        assert r.status_code == status, (path, params, r.text)
    # Explicit sizes work, with the checkpoint of that size when there is one.
    r = api.get(
        "/v1/audit/proofs/inclusion", as_="county-auditor", params={"index": 0, "tree_size": size}
    )
    assert r.status_code == 200 and r.json()["checkpoint"]["tree_size"] == size


def _save(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_export_ndjson_and_csv_verify_offline(api, client, tmp_path):
    key = _key(client)
    _submit(api)
    r = api.get("/v1/audit/export", as_="county-auditor")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/x-ndjson")
    size = int(r.headers["audit-tree-size"])
    lines = r.content.splitlines()
    assert len(lines) == size
    assert [json.loads(line)["index"] for line in lines] == list(range(size))
    ndjson = _save(tmp_path, "export.ndjson", r.content)
    cp_doc = api.get("/v1/audit/checkpoints/latest", as_="county-auditor").json()
    cp_file = _save(tmp_path, "checkpoint.json", json.dumps(cp_doc).encode())
    # The export was made at a checkpoint of its own size (fetched by size); the latest is larger.
    r = api.get(
        f"/v1/audit/checkpoints/{size}", as_="county-auditor", headers={"Accept": "text/plain"}
    )
    assert r.status_code == 200, r.text
    exported_cp = {"note": r.text}
    assert api.get("/v1/audit/checkpoints/999999999", as_="county-auditor").status_code == 404
    assert api.get("/v1/audit/checkpoints/abc", as_="county-auditor").status_code == 422
    assert api.get(f"/v1/audit/checkpoints/{size}", as_="district-sis").json()["tree_size"] == size
    cp = open_checkpoint(exported_cp["note"], key)
    report = verify_export(ndjson, [cp])
    assert report.ok, report.as_dict()
    assert report.entries == size

    r = api.get(
        "/v1/audit/export", as_="county-auditor", params={"format": "csv", "tree_size": size}
    )
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert tuple(rows[0]) == EXPORT_COLUMNS and len(rows) == size + 1
    csv_path = _save(tmp_path, "export.csv", r.content)
    report = verify_export(csv_path, [cp])
    assert report.ok and report.format == "csv", report.as_dict()

    # The export itself is audited.
    exports = _events(api, after=size - 1, action="audit.export")
    assert [e["counts"]["tree_size"] for e in exports] == [size, size]

    # With the latest (larger) checkpoint the export is not fully covered: not verified.
    latest = read_checkpoint(cp_file.read_text(), key)
    report = verify_export(ndjson, [latest])
    assert not report.ok and report.first_bad.kind == "truncated"

    # The command line agrees.
    key_file = _save(tmp_path, "key.pem", key.pem().encode())
    cp_note = _save(tmp_path, "cp.note", cp.note.encode())
    runner = CliRunner()
    result = runner.invoke(
        audit_app,
        ["verify", str(ndjson), "--checkpoint", str(cp_note), "--public-key", str(key_file)],
    )
    assert result.exit_code == 0, result.output
    assert "OK" in result.output
    result = runner.invoke(
        audit_app,
        [
            "verify",
            str(csv_path),
            "--checkpoint",
            str(cp_note),
            "--public-key",
            str(key_file),
            "--json",
        ],
    )
    assert result.exit_code == 0 and json.loads(result.output)["ok"] is True


def test_filtered_export_withholds_other_events_but_still_verifies(api, client, tmp_path):
    key = _key(client)
    _submit(api)
    r = api.get("/v1/audit/export", as_="county-auditor", params={"organization": "district"})
    size = int(r.headers["audit-tree-size"])
    lines = [json.loads(line) for line in r.content.splitlines()]
    assert len(lines) == size
    full = [line for line in lines if "action" in line]
    assert full and all(line["organization"] == "district" for line in full)
    withheld = [line for line in lines if "action" not in line]
    assert withheld and all(set(line) == {"index", "leaf_hash"} for line in withheld)
    proof = api.get(
        "/v1/audit/proofs/inclusion", as_="county-auditor", params={"index": 0, "tree_size": size}
    ).json()
    cp = open_checkpoint(proof["checkpoint"]["note"], key)
    assert verify_export(_save(tmp_path, "f.ndjson", r.content), [cp]).ok
    r = api.get(
        "/v1/audit/export",
        as_="county-auditor",
        params={"organization": "district", "format": "csv", "tree_size": size},
    )
    assert verify_export(_save(tmp_path, "f.csv", r.content), [cp]).ok
    r = api.get(
        "/v1/audit/export",
        as_="county-auditor",
        params={"action": "submission.*", "tree_size": size},
    )
    actions = {json.loads(line).get("action") for line in r.content.splitlines()}
    assert actions == {"submission.create", None}
