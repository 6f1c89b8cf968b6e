"""The submissions API over HTTP: formats, receipts, visibility, withdrawal, replacement,
idempotency, and bad inputs that must each get a clear 4xx and leave nothing behind."""

from __future__ import annotations

import gzip
import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sqlalchemy import select

from records import idempotency, service
from records.models import IdempotencyReservation, Submission
from records.process import hostname, process_token
from records.retention import scratch_root
from tests.conftest import MASTER
from tests.records.helpers import counts
from tests.records.test_intake import gzip_bomb

URL = "/v1/datasets/kindergarten_readiness/submissions"
HEADER = "student_id,school_year,neighborhood,race_ethnicity,ready,assessment_score\n"


def rows(n: int, prefix: str = "QA", start: int = 0, year: str = "2025-26") -> str:
    return "".join(
        f"{prefix}{i:08d},{year},Ashland,Asian,{'true' if i % 2 else 'false'},{i % 101}\n"
        for i in range(start, start + n)
    )


def csv(n: int = 5, **kw: str) -> bytes:
    return (HEADER + rows(n, **kw)).encode()


def post(
    api, body: bytes, *, as_: str = "district-sis", ctype: str = "text/csv", url=URL, **headers
):
    return api.post(url, as_=as_, content=body, headers={"Content-Type": ctype, **headers})


def scratch_entries(settings) -> list[Path]:
    root = scratch_root(settings.data_dir)
    return list(root.iterdir()) if root.is_dir() else []


def problem(r, status: int, kind: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["type"] == f"/problems/{kind}"
    assert body["status"] == status
    return body


# -- formats ------------------------------------------------------------------------------------


def test_csv_ndjson_json_and_gzip_give_the_same_records(api, session):
    records = [
        {"student_id": f"QB{i:08d}", "school_year": "2025-26", "neighborhood": "Ashland",
         "race_ethnicity": "Asian", "ready": i % 2 == 1, "assessment_score": i}
        for i in range(4)
    ]  # fmt: skip
    bodies = {
        "text/csv": csv(4, prefix="QB").replace(b"false", b"False"),
        "application/x-ndjson": "".join(json.dumps(r) + "\n" for r in records).encode(),
        "application/json": json.dumps(records).encode(),
    }
    frames = []
    for ctype, body in bodies.items():
        for encoding in (None, "gzip"):
            data = gzip.compress(body) if encoding else body
            extra = {"Content-Encoding": encoding} if encoding else {}
            r = post(api, data, ctype=ctype, **extra)
            assert r.status_code == 201, r.text
            receipt = r.json()
            assert receipt["row_count"] == 4
            import hashlib

            assert receipt["body_sha256"] == hashlib.sha256(data).hexdigest()
            sub = session.get(Submission, receipt["id"])
            frames.append(service.load_frame(session, MASTER, [sub]))
    for frame in frames[1:]:
        assert frame.equals(frames[0])
    assert frames[0]["ready"].to_list() == [False, True, False, True]


def test_receipt_shape(api):
    r = post(api, csv(3), period="2025-26")
    r = post(api, csv(3, prefix="QC"), url=URL + "?period=2025-26")
    assert r.status_code == 201
    receipt = r.json()
    assert set(receipt) == {
        "id", "dataset", "agreement", "row_count", "body_sha256", "received_at", "status",
        "audit_index", "replaces", "period", "withdrawal", "csv", "quality",
    }  # fmt: skip
    assert receipt["csv"] == {"delimiter": ","}
    assert receipt["dataset"] == "kindergarten_readiness"
    assert receipt["agreement"] == {"id": "district-early-learning-outcomes", "version": 1}
    assert receipt["period"] == "2025-26" and receipt["status"] == "accepted"
    assert receipt["withdrawal"] is None
    assert r.headers["location"] == f"/v1/submissions/{receipt['id']}"


# -- visibility, withdrawal, replacement ------------------------------------------------------------


def test_partners_see_only_their_own_submissions(api):
    mine = post(api, csv(2)).json()["id"]
    r = api.get("/v1/submissions", as_="district-sis")
    assert mine in [s["id"] for s in r.json()["items"]]
    r = api.get("/v1/submissions", as_="health-vitals")
    assert mine not in [s["id"] for s in r.json()["items"]]
    assert api.get(f"/v1/submissions/{mine}", as_="district-sis").json()["id"] == mine
    problem(api.get(f"/v1/submissions/{mine}", as_="health-vitals"), 403, "object-access-denied")
    problem(api.get("/v1/submissions/sub_nope", as_="district-sis"), 404, "not-found")
    problem(api.delete(f"/v1/submissions/{mine}", as_="health-vitals"), 403, "object-access-denied")


def test_withdrawal_excludes_from_later_releases(api, session, clock):
    # The district's agreement gives 30 days' notice: in scope until then, out from then on.
    sid = post(api, csv(2, prefix="QD")).json()["id"]

    def in_scope(now) -> set[str]:
        ids = frozenset({"district-early-learning-outcomes"})
        return {s.id for s in service.in_scope(session, "kindergarten_readiness", ids, now)}

    assert sid in in_scope(clock())
    r = api.delete(f"/v1/submissions/{sid}", as_="district-sis")
    assert r.status_code == 200 and r.json()["status"] == "accepted"
    effective = clock() + timedelta(days=30)
    assert r.json()["withdrawal"]["effective_at"] == effective.isoformat()
    assert sid in in_scope(clock()) and sid in in_scope(effective - timedelta(microseconds=1))
    assert sid not in in_scope(effective)
    problem(api.delete(f"/v1/submissions/{sid}", as_="district-sis"), 409, "conflict")


def test_replacement_for_the_same_period(api, session, clock):
    old = post(api, csv(3, prefix="QE"), url=URL + "?period=2025-26").json()["id"]
    r = post(api, csv(4, prefix="QE"), url=URL + f"?period=2025-26&replaces={old}")
    assert r.status_code == 201, r.text
    new = r.json()
    assert new["replaces"] == old
    assert api.get(f"/v1/submissions/{old}", as_="district-sis").json()["status"] == "replaced"
    scope = {
        s.id
        for s in service.in_scope(
            session,
            "kindergarten_readiness",
            frozenset({"district-early-learning-outcomes"}),
            clock(),
        )
    }
    assert new["id"] in scope and old not in scope
    # A replaced submission cannot be replaced again, nor one of another period or organization.
    problem(
        post(api, csv(1, prefix="QF"), url=URL + f"?period=2025-26&replaces={old}"),
        409,
        "replacement-invalid",
    )
    problem(
        post(api, csv(1, prefix="QF"), url=URL + f"?period=2024-25&replaces={new['id']}"),
        409,
        "replacement-invalid",
    )
    problem(post(api, csv(1, prefix="QF"), url=URL + "?replaces=sub_missing"), 404, "not-found")


def test_declared_period_is_checked_against_the_records(api, session):
    before = counts(session)
    r = post(api, csv(3, prefix="QG", year="2024-25"), url=URL + "?period=2025-26")
    body = problem(r, 422, "submission-rejected")
    assert body["report"]["counts"] == {"period": 3}
    assert counts(session) == before


# -- idempotency --------------------------------------------------------------------------------


def test_same_key_same_body_returns_the_original_receipt(api, session):
    body = csv(3, prefix="QH")
    first = post(api, body, **{"Idempotency-Key": "upload-2025-09-01.csv"})
    assert first.status_code == 201
    again = post(api, body, **{"Idempotency-Key": "upload-2025-09-01.csv"})
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    stored = session.get(Submission, first.json()["id"])
    assert stored.idempotency_key != "upload-2025-09-01.csv"  # only a keyed hash is stored
    # Another client of the same key is another key.
    other = post(api, csv(1, prefix="QI"), as_="district-sis", **{"Idempotency-Key": "k2"})
    assert other.status_code == 201


def test_same_key_different_body_or_dataset_is_refused(api, session):
    post(api, csv(2, prefix="QJ"), **{"Idempotency-Key": "k-1"})
    before = counts(session)
    problem(
        post(api, csv(2, prefix="QK"), **{"Idempotency-Key": "k-1"}), 422, "idempotency-key-reused"
    )
    attendance = "/v1/datasets/attendance/submissions"
    problem(
        post(api, csv(2, prefix="QJ"), url=attendance, **{"Idempotency-Key": "k-1"}),
        422,
        "idempotency-key-reused",
    )
    assert counts(session) == before


def test_a_key_in_flight_gets_409_and_a_dead_owner_does_not_block(api, session, clock):
    hashed = idempotency.key_hash(MASTER, "district-sis", "busy")
    reservation = IdempotencyReservation(
        client_id="district-sis", key_hash=hashed, dataset="kindergarten_readiness",
        owner=process_token(), request_id="another-request", created_at=clock(),
        lease_until=clock() + timedelta(seconds=60),
    )  # fmt: skip
    session.add(reservation)
    session.commit()
    r = post(api, csv(2, prefix="QL"), **{"Idempotency-Key": "busy"})
    problem(r, 409, "idempotency-in-flight")
    assert r.headers["retry-after"] == "5"
    # The same reservation left by a process that no longer runs on this host.
    reservation.owner = f"{hostname()}/999999999/12345"
    session.commit()
    r = post(api, csv(2, prefix="QL"), **{"Idempotency-Key": "busy"})
    assert r.status_code == 201, r.text
    assert session.scalars(select(IdempotencyReservation)).all() == []


def test_a_reservation_on_another_host_blocks_until_its_lease_lapses(api, session, clock):
    hashed = idempotency.key_hash(MASTER, "district-sis", "remote")
    session.add(
        IdempotencyReservation(
            client_id="district-sis", key_hash=hashed, dataset="kindergarten_readiness",
            owner="some-other-host/42/777", request_id="r", created_at=clock(),
            lease_until=clock() + idempotency.LEASE,
        )
    )  # fmt: skip
    session.commit()
    problem(
        post(api, csv(1, prefix="QM"), **{"Idempotency-Key": "remote"}),
        409,
        "idempotency-in-flight",
    )
    clock.advance(seconds=idempotency.LEASE.total_seconds() + 1)
    assert post(api, csv(1, prefix="QM"), **{"Idempotency-Key": "remote"}).status_code == 201


def test_a_refused_submission_releases_its_key(api, session):
    bad = csv(2, prefix="qn")  # lower case: fails the pattern
    problem(post(api, bad, **{"Idempotency-Key": "retry-me"}), 422, "submission-rejected")
    assert session.scalars(select(IdempotencyReservation)).all() == []
    assert post(api, csv(2, prefix="QN"), **{"Idempotency-Key": "retry-me"}).status_code == 201


def test_idempotency_key_must_be_visible_ascii(api):
    problem(post(api, csv(1), **{"Idempotency-Key": "x" * 256}), 422, "invalid-input")


# -- bad inputs: a clear 4xx, nothing behind ------------------------------------------------------

BAD_INPUTS = {
    "ragged row": (csv(3).decode() + "QA99999999,2025-26\n", "text/csv", {}, 400, "malformed-body"),
    "unclosed quote": (
        HEADER + 'QA00000001,2025-26,"Ashland,Asian,true,3\n',
        "text/csv",
        {},
        400,
        "malformed-body",
    ),
    "latin-1": (
        (HEADER + "QA00000001,2025-26,Ashland,Asian,true,3\n")
        .replace("Ashland", "Åshland")
        .encode("latin-1"),
        "text/csv",
        {},
        415,
        "unsupported-encoding",
    ),
    "utf-16 with BOM": (
        (HEADER + rows(2)).encode("utf-16"),
        "text/csv",
        {},
        415,
        "unsupported-encoding",
    ),
    "utf-16 without BOM": (
        (HEADER + rows(2)).encode("utf-16-le"),
        "text/csv",
        {},
        415,
        "unsupported-encoding",
    ),
    "duplicate header": (
        HEADER.replace("ready", "neighborhood") + rows(2),
        "text/csv",
        {},
        400,
        "malformed-body",
    ),
    "empty body": (b"", "text/csv", {}, 400, "malformed-body"),
    "header only": (HEADER, "text/csv", {}, 400, "malformed-body"),
    "wrong content type": (csv(2), "text/plain", {}, 415, "unsupported-encoding"),
    "no content type": (csv(2), "", {}, 415, "unsupported-encoding"),
    "non-utf-8 charset": (
        csv(2),
        "text/csv; charset=windows-1252",
        {},
        415,
        "unsupported-encoding",
    ),
    "brotli": (csv(2), "text/csv", {"Content-Encoding": "br"}, 415, "unsupported-encoding"),
    "not gzip": (csv(2), "text/csv", {"Content-Encoding": "gzip"}, 400, "malformed-body"),
    "gzip bomb": (
        gzip_bomb(HEADER.encode(), 300 << 20),
        "text/csv",
        {"Content-Encoding": "gzip"},
        413,
        "payload-too-large",
    ),
    "nested json": (b'[{"student_id": {"x": 1}}]', "application/json", {}, 400, "malformed-body"),
    "json object not array": (
        b'{"student_id": "QA00000001"}',
        "application/json",
        {},
        400,
        "malformed-body",
    ),
    "bad ndjson": (
        b'{"student_id": "QA00000001"}\nnot json\n',
        "application/x-ndjson",
        {},
        400,
        "malformed-body",
    ),
    "unlisted column": (
        HEADER.replace("assessment_score", "home_address")
        + rows(2).replace(",0\n", ",1 Main St\n").replace(",1\n", ",1 Main St\n"),
        "text/csv",
        {},
        403,
        "policy-denied",
    ),
    "more columns than fields": (
        HEADER.replace("\n", ",home_address\n") + rows(2).replace("\n", ",1 Main St\n"),
        "text/csv",
        {},
        422,
        "too-many-columns",
    ),
    "invalid values": (csv(2, prefix="qa"), "text/csv", {}, 422, "submission-rejected"),
    "duplicate key": (HEADER + rows(2) + rows(1), "text/csv", {}, 422, "submission-rejected"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_gets_a_clear_4xx_and_leaves_nothing_behind(api, session, settings, case):
    body, ctype, headers, status, kind = BAD_INPUTS[case]
    data = body.encode() if isinstance(body, str) else body
    api.token("district-sis")
    before = counts(session)
    r = post(
        api, data, ctype=ctype, **headers, **{"Idempotency-Key": "bad-" + case.replace(" ", "-")}
    )
    payload = problem(r, status, kind)
    assert payload["detail"]
    assert "QA0000000" not in r.text and "Main St" not in r.text
    assert counts(session) == before
    assert scratch_entries(settings) == []


def test_a_refusal_is_audited_without_values(api, session):
    r = post(api, csv(2, prefix="qz"))
    assert r.status_code == 422
    events = api.get(
        "/v1/audit/events",
        as_="county-auditor",
        params={"limit": 1000, "action": "submission.create"},
    ).json()["items"]
    refused = [e for e in events if e["outcome"] == "rejected"]
    assert refused and refused[-1]["detail"] == "submission-rejected"
    assert "qz0000" not in json.dumps(events)


def test_policy_denies_a_partner_that_does_not_provide_the_dataset(api, session):
    before = counts(session)
    problem(post(api, csv(2), as_="health-vitals"), 403, "policy-denied")
    problem(
        api.post(
            URL, as_="district-dashboard", content=csv(1), headers={"Content-Type": "text/csv"}
        ),
        403,
        "insufficient-scope",
    )
    assert counts(session) == before


def test_body_over_the_limit(api_with, session):
    with api_with(max_submission_bytes=4096) as api:
        api.token("district-sis")
        before = counts(session)
        big = csv(100)
        assert len(big) > 4096
        # Declared too large: refused before a byte is read.
        problem(post(api, big), 413, "payload-too-large")

        # Not declared (chunked): refused once the limit is crossed while streaming.
        def chunked():
            for i in range(0, len(big), 1000):
                yield big[i : i + 1000]

        r = api.post(
            URL, as_="district-sis", content=chunked(), headers={"Content-Type": "text/csv"}
        )
        problem(r, 413, "payload-too-large")
        # Decompressed too large.
        problem(
            post(api, gzip.compress(big), **{"Content-Encoding": "gzip"}), 413, "payload-too-large"
        )
        assert counts(session) == before
        assert post(api, csv(3)).status_code == 201


@pytest.mark.slow
def test_wrong_type_in_row_999999_is_found_and_nothing_is_stored(api, session, settings):
    n = 1_000_000
    ids = np.char.add("QW", np.char.zfill(np.arange(n).astype(str), 8))
    scores = (np.arange(n) % 101).astype(str).astype(object)
    scores[999_998] = "ninety"  # row 999,999 (rows count from 1 after the header)
    frame = pl.DataFrame(
        {
            "student_id": ids, "school_year": ["2025-26"] * n, "neighborhood": ["Ashland"] * n,
            "race_ethnicity": ["Asian"] * n, "ready": ["true"] * n, "assessment_score": scores.astype(str),
        }
    )  # fmt: skip
    body = frame.write_csv().encode()
    api.token("district-sis")
    before = counts(session)
    r = post(api, body)
    payload = problem(r, 422, "submission-rejected")
    assert payload["report"]["counts"] == {"type": 1}
    assert payload["report"]["errors"] == [
        {"row": 999_999, "field": "assessment_score", "code": "type",
         "message": "The value is not of the field's type (integer)."}
    ]  # fmt: skip
    assert "ninety" not in r.text
    assert counts(session) == before
    assert scratch_entries(settings) == []


def test_a_key_committed_by_another_request_while_reading_replays(api, session, monkeypatch):
    # Request A stores while request B (same key, same body) is past its checks: B must answer
    # with A's receipt and leave no reservation behind.
    body = csv(2, prefix="QO")
    calls = {"n": 0}
    original = idempotency.previous_submission

    def not_yet(*args):
        calls["n"] += 1
        return None if calls["n"] == 1 else original(*args)

    first = post(api, body, **{"Idempotency-Key": "race"}).json()
    monkeypatch.setattr(idempotency, "previous_submission", not_yet)
    r = post(api, body, **{"Idempotency-Key": "race"})
    assert r.status_code == 201 and r.headers["idempotent-replayed"] == "true"
    assert r.json()["id"] == first["id"]
    assert session.scalars(select(IdempotencyReservation)).all() == []
