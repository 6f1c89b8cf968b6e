"""Resumable uploads (tus 1.0.0) over HTTP: creation, offsets, completion through the ingest
path, who may see an upload, bad input that changes nothing, expiry, termination, replay."""

from __future__ import annotations

import base64
import gzip

from sqlalchemy import func, select

from records.models import ResumableUpload, Submission
from tests.records.test_submissions_api import csv, problem

CREATE = "/v1/datasets/kindergarten_readiness/uploads"
TUS = {"Tus-Resumable": "1.0.0"}


def metadata(**values: str) -> str:
    return ",".join(
        f"{k.replace('_', '-')} {base64.b64encode(v.encode()).decode()}" for k, v in values.items()
    )


def create(
    api, length: int, *, as_: str = "district-sis", key: str | None = None, url=CREATE, **meta: str
):
    headers = {**TUS, "Upload-Length": str(length)}
    meta.setdefault("content_type", "text/csv")
    if meta:
        headers["Upload-Metadata"] = metadata(**meta)
    if key:
        headers["Idempotency-Key"] = key
    return api.post(url, as_=as_, headers=headers)


def patch(api, location: str, offset: int, body: bytes, *, as_: str = "district-sis", **extra):
    headers = {
        **TUS,
        "Upload-Offset": str(offset),
        "Content-Type": "application/offset+octet-stream",
        **extra,
    }
    return api.client.patch(location, content=body, headers=api.headers(as_, **headers))


def head(api, location: str, as_: str = "district-sis"):
    return api.client.head(location, headers=api.headers(as_, **TUS))


def submissions(session) -> int:
    return session.scalar(select(func.count()).select_from(Submission))


def test_options_advertise_the_protocol(api, settings):
    r = api.client.options("/v1/uploads")
    assert r.status_code == 204
    assert r.headers["tus-version"] == "1.0.0"
    assert set(r.headers["tus-extension"].split(",")) == {"creation", "termination", "expiration"}
    assert int(r.headers["tus-max-size"]) == settings.max_submission_bytes


def test_an_upload_in_pieces_becomes_one_submission(api, session, settings):
    body = gzip.compress(csv(40, prefix="UP"), mtime=0)
    before = submissions(session)
    r = create(api, len(body), period="2025-26", content_type="text/csv", content_encoding="gzip")
    assert r.status_code == 201, r.text
    location = r.headers["location"]
    assert location.startswith("/v1/uploads/upl_")
    assert r.headers["upload-offset"] == "0" and r.headers["upload-expires"]
    half = len(body) // 2
    r = patch(api, location, 0, body[:half])
    assert r.status_code == 204, r.text
    assert r.headers["upload-offset"] == str(half)
    r = head(api, location)
    assert r.status_code == 200
    assert r.headers["upload-offset"] == str(half)
    assert r.headers["upload-length"] == str(len(body))
    assert r.headers["cache-control"] == "no-store"
    r = patch(api, location, half, body[half:])
    assert r.status_code == 204, r.text
    assert r.headers["location"].startswith("/v1/submissions/")
    state = api.get(location, as_="district-sis").json()
    assert state["state"] == "complete"
    assert state["offset"] == state["length"] == len(body)
    assert state["submission"]["row_count"] == 40
    assert state["submission"]["period"] == "2025-26"
    assert submissions(session) == before + 1
    # The bytes are gone once stored.
    upload_id = location.rsplit("/", 1)[1]
    assert not (settings.data_dir / "uploads" / upload_id).exists()
    # A client that lost the last answer and sends nothing more at the end converges.
    r = patch(api, location, len(body), b"")
    assert r.status_code == 204
    assert submissions(session) == before + 1


def test_another_clients_upload_is_not_found(api):
    location = create(api, 10).headers["location"]
    for r in (
        head(api, location, as_="health-vitals"),
        api.get(location, as_="health-vitals"),
        patch(api, location, 0, b"student_id", as_="health-vitals"),
        api.delete(location, as_="health-vitals", headers=TUS),
    ):
        assert r.status_code == 404
    unknown = "/v1/uploads/upl_00000000000000000000000000"
    assert api.get(unknown, as_="district-sis").status_code == 404
    assert api.get(location, as_="district-sis").json()["offset"] == 0


def test_wrong_offset_is_409_and_changes_nothing(api):
    location = create(api, 100).headers["location"]
    assert patch(api, location, 0, b"x" * 10).status_code == 204
    body = problem(patch(api, location, 0, b"y" * 10), 409, "upload-offset-mismatch")
    assert body["offset"] == 10
    problem(patch(api, location, 20, b"y" * 10), 409, "upload-offset-mismatch")
    assert head(api, location).headers["upload-offset"] == "10"


def test_bad_headers_change_nothing(api, session):
    location = create(api, 20).headers["location"]
    problem(
        patch(api, location, 0, b"abc", **{"Content-Type": "text/csv"}),
        415,
        "unsupported-media-type",
    )
    r = api.client.patch(
        location,
        content=b"abc",
        headers=api.headers(
            "district-sis",
            **{"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
        ),
    )
    problem(r, 412, "tus-version-unsupported")
    problem(patch(api, location, 0, b"z" * 21), 413, "payload-too-large")
    assert head(api, location).headers["upload-offset"] == "0"
    # Malformed creations
    headers = {**TUS, "Upload-Length": "10", "Upload-Metadata": "period !!notbase64"}
    problem(api.post(CREATE, as_="district-sis", headers=headers), 422, "invalid-input")
    problem(api.post(CREATE, as_="district-sis", headers=TUS), 422, "invalid-input")
    problem(create(api, 10, content_type="image/png"), 415, "unsupported-encoding")
    too_big = {**TUS, "Upload-Length": str(10**12)}
    problem(api.post(CREATE, as_="district-sis", headers=too_big), 413, "payload-too-large")
    assert session.scalar(select(func.count()).select_from(ResumableUpload)) == 1


def test_creation_checks_the_dataset_and_permission(api):
    r = create(api, 10, url="/v1/datasets/no_such_dataset/uploads")
    assert r.status_code in (403, 404), r.text
    # A partner that may not submit this dataset is refused before any byte is sent.
    assert create(api, 10, as_="health-vitals").status_code in (403, 404)


def test_a_refused_upload_keeps_its_problem(api, session):
    body = csv(3).replace(b"Ashland", b"Nowhere")
    before = submissions(session)
    location = create(api, len(body), period="2025-26").headers["location"]
    r = patch(api, location, 0, body)
    problem(r, 422, "submission-rejected")
    state = api.get(location, as_="district-sis").json()
    assert state["state"] == "refused"
    assert state["problem"]["type"] == "/problems/submission-rejected"
    assert state["problem"]["report"]
    assert submissions(session) == before


def test_expired_upload_is_gone_and_purged(api, session, settings, clock):
    from records.retention import purge_and_scrub

    location = create(api, 100).headers["location"]
    assert patch(api, location, 0, b"x" * 10).status_code == 204
    upload_id = location.rsplit("/", 1)[1]
    path = settings.data_dir / "uploads" / upload_id
    assert path.stat().st_size == 10
    clock.advance(seconds=settings.upload_expiry_hours * 3600 + 1)
    assert head(api, location).status_code == 410
    problem(patch(api, location, 10, b"x"), 410, "upload-expired")
    assert api.get(location, as_="district-sis").json()["state"] == "expired"
    sessions = api.client.app.state.backbone.sessions
    engine = session.get_bind()
    report = purge_and_scrub(sessions, engine, clock(), settings.data_dir)
    assert report.uploads_removed >= 1  # with files of other tests' rolled-back uploads
    assert not path.exists()
    assert session.get(ResumableUpload, upload_id).state == "expired"


def test_termination_deletes_the_bytes(api, settings):
    location = create(api, 100).headers["location"]
    assert patch(api, location, 0, b"x" * 10).status_code == 204
    path = settings.data_dir / "uploads" / location.rsplit("/", 1)[1]
    assert path.exists()
    problem(api.delete(location, as_="district-sis"), 412, "tus-version-unsupported")
    r = api.delete(location, as_="district-sis", headers=TUS)
    assert r.status_code == 204
    assert not path.exists()
    assert head(api, location).status_code == 404


def test_idempotency_key_answers_the_same_upload_and_stores_once(api, session):
    body = csv(7, prefix="UK")
    before = submissions(session)
    first = create(api, len(body), key="file-1", period="2025-26")
    again = create(api, len(body), key="file-1", period="2025-26")
    assert again.status_code == 201
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    problem(
        create(api, len(body) + 1, key="file-1", period="2025-26"), 422, "idempotency-key-reused"
    )
    assert patch(api, first.headers["location"], 0, body).status_code == 204
    done = create(api, len(body), key="file-1", period="2025-26")
    assert done.headers["location"] == first.headers["location"]
    assert done.headers["upload-offset"] == str(len(body))
    receipt = api.get(first.headers["location"], as_="district-sis").json()["submission"]
    # The same key in one request replays the upload's submission.
    r = api.post(
        "/v1/datasets/kindergarten_readiness/submissions?period=2025-26",
        as_="district-sis",
        content=body,
        headers={"Content-Type": "text/csv", "Idempotency-Key": "file-1"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["id"] == receipt["id"]
    assert submissions(session) == before + 1


def test_a_last_piece_without_content_length_is_ingested_from_disk(api, session):
    body = csv(9, prefix="CH")
    before = submissions(session)
    location = create(api, len(body), period="2025-26").headers["location"]
    assert patch(api, location, 0, body[:50]).status_code == 204
    r = patch(api, location, 50, iter([body[50:100], body[100:]]))  # chunked: no length
    assert r.status_code == 204, r.text
    assert r.headers["location"].startswith("/v1/submissions/")
    assert api.get(location, as_="district-sis").json()["submission"]["row_count"] == 9
    assert submissions(session) == before + 1


def test_the_bytes_wait_in_the_upload_dir(api_with, tmp_path):
    with api_with(upload_dir=tmp_path / "elsewhere") as api:
        location = create(api, 100).headers["location"]
        assert patch(api, location, 0, b"x" * 10).status_code == 204
        assert (tmp_path / "elsewhere" / location.rsplit("/", 1)[1]).stat().st_size == 10
