"""``backbone demo``: the whole flow over HTTP, printing what each kind of user sees."""

from __future__ import annotations

import io
import random
import time
from typing import Any

import httpx

from demo.initiative import NEIGHBORHOODS, RACE_ETHNICITY


def _creds(credentials: dict[str, Any], client_id: str) -> tuple[str, str]:
    for c in credentials["clients"]:
        if c["client_id"] == client_id:
            return c["client_id"], c["client_secret"]
    raise KeyError(client_id)


def token(
    http: httpx.Client, credentials: dict[str, Any], client_id: str, scope: str | None = None
) -> str:
    cid, secret = _creds(credentials, client_id)
    data = {"grant_type": "client_credentials"}
    if scope:
        data["scope"] = scope
    r = http.post("/oauth/token", data=data, auth=(cid, secret))
    r.raise_for_status()
    return str(r.json()["access_token"])


def released(
    http: httpx.Client, r: httpx.Response, headers: dict[str, str], timeout: float = 900.0
) -> tuple[int, dict[str, Any]]:
    """A release request's outcome: its answer, or, for a release computed by a background job
    (202 with ``Location: /v1/jobs/{id}``), the job polled until it finishes: (200 and the
    release's summary) or (202 and the held release's), or the job's problem raised."""
    r.raise_for_status()
    location = r.headers.get("location", "")
    if r.status_code != 202 or not location.startswith("/v1/jobs/"):
        return r.status_code, dict(r.json())
    deadline = time.monotonic() + timeout
    while True:
        job = http.get(location, headers=headers)
        job.raise_for_status()
        body = job.json()
        if body["state"] == "succeeded":
            release: dict[str, Any] = body["release"]
            return (200 if release["state"] == "published" else 202), release
        if body["state"] == "failed":
            raise RuntimeError(f"the release job failed: {body['problem']['title']}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"the release job {body['id']} has not finished")
        time.sleep(float(job.headers.get("retry-after", "1")))


def late_batch(count: int = 25, seed: int = 7) -> bytes:
    """A small CSV batch of kindergartners who enrolled late in 2025-26."""
    rng = random.Random(seed)
    out = io.StringIO()
    out.write("student_id,school_year,neighborhood,race_ethnicity,ready,assessment_score\n")
    for i in range(count):
        ready = rng.random() < 0.5
        out.write(
            f"RV9{rng.randrange(10**7):07d},2025-26,{rng.choice(NEIGHBORHOODS[:5])},"
            f"{rng.choice(RACE_ETHNICITY)},{str(ready).lower()},{rng.randint(40, 95)}\n"
        )
        del i
    return out.getvalue().encode()


def late_births(count: int = 40, seed: int = 11) -> bytes:
    """A small CSV batch of 2020 births registered late."""
    rng = random.Random(seed)
    out = io.StringIO()
    out.write("child_id,birth_year,neighborhood,race_ethnicity,birth_weight_grams\n")
    for _ in range(count):
        out.write(
            f"LB{rng.randrange(10**8):08d},2020,{rng.choice(NEIGHBORHOODS[:5])},"
            f"{rng.choice(RACE_ETHNICITY)},{rng.randint(1800, 4300)}\n"
        )
    return out.getvalue().encode()


def _show_table(release: dict[str, Any], limit: int = 12) -> None:
    names = [h["name"] for h in release["headers"]]
    print("    " + " | ".join(names))
    for row in release["rows"][:limit]:
        print("    " + " | ".join("—" if v is None else str(v) for v in row))
    statuses: dict[str, int] = {}
    for row in release["rows"]:
        statuses[row[-1]] = statuses.get(row[-1], 0) + 1
    print(f"    ... {len(release['rows'])} cells; by status: {statuses}")


def run(url: str, credentials: dict[str, Any]) -> int:
    with httpx.Client(base_url=url, timeout=120) as http:
        print("1. The district's student information system gets a token and submits a CSV batch.")
        partner = token(http, credentials, "district-sis")
        r = http.post(
            "/v1/datasets/kindergarten_readiness/submissions?period=2025-26",
            content=late_batch(),
            headers={"Authorization": f"Bearer {partner}", "Content-Type": "text/csv"},
        )
        r.raise_for_status()
        receipt = r.json()
        print(
            f"   receipt: {receipt['id']}, {receipt['row_count']} rows under agreement "
            f"{receipt['agreement']['id']} v{receipt['agreement']['version']}, audit index {receipt['audit_index']}"
        )

        print(
            "2. The backbone publishes kindergartners assessed by neighborhood (cells under k suppressed)."
        )
        manager = token(http, credentials, "backbone-manager")
        r = http.post(
            "/v1/indicators/kindergarten-enrollment/releases",
            json={"dimensions": ["neighborhood"]},
            headers={"Authorization": f"Bearer {manager}"},
        )
        _status, release = released(http, r, {"Authorization": f"Bearer {manager}"})
        print(f"   release {release['id']} (k = {release['parameters']['min_cell_size']})")

        print("3. The initiative's dashboard reads it.")
        dashboard = token(http, credentials, "backbone-dashboard")
        r = http.get(
            f"/v1/releases/{release['id']}", headers={"Authorization": f"Bearer {dashboard}"}
        )
        r.raise_for_status()
        _show_table(r.json())

        _review_step(http, credentials, manager, dashboard)

        print(
            "8. The community opens the scorecard at / without signing in: the public results,"
            " and the latest value of each indicator published to the public."
        )
        page = http.get("/")
        page.raise_for_status()
        r = http.get("/v1/results")
        r.raise_for_status()
        for result in r.json():
            print(f"   {result['title']}")
            for indicator in result["indicators"]:
                latest = indicator.get("latest")
                shown = f"{latest['value']} ({latest['period']})" if latest else "no public value"
                print(f"     {indicator['title']}: {shown}, {indicator.get('trend') or '-'}")

        print("9. The county auditor lists the audit events of all of the above.")
        auditor = token(http, credentials, "county-auditor")
        r = http.get(
            "/v1/audit/events",
            params={"after": max(0, receipt["audit_index"] - 1) - 1, "limit": 20},
            headers={"Authorization": f"Bearer {auditor}"},
        )
        r.raise_for_status()
        for event in r.json()["items"]:
            print(
                f"    #{event['index']} {event['at'][:19]} {event['organization'] or '-':>15} "
                f"{event['action']:<20} {event['outcome']:<9} {event['resource_id'] or ''}"
            )
    return 0


def _review_step(
    http: httpx.Client, credentials: dict[str, Any], manager: str, dashboard: str
) -> None:
    """The health agreement's "no surprises" clause: a release is held until the health
    department's data manager has reviewed it."""

    def bearer(token_: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token_}"}

    print(
        "4. The health department registers late births; the backbone asks for low birth weight"
        " by birth year and neighborhood. The health agreement requires the department's review"
        " first: the release is computed, protected and stored, then held."
    )
    vitals = token(http, credentials, "health-vitals")
    r = http.post(
        "/v1/datasets/births/submissions?period=2020",
        content=late_births(),
        headers={**bearer(vitals), "Content-Type": "text/csv"},
    )
    r.raise_for_status()
    r = http.post(
        "/v1/indicators/low-birth-weight/releases",
        json={"dimensions": ["birth_year", "neighborhood"]},
        headers=bearer(manager),
    )
    status, held = released(http, r, bearer(manager))
    due = held["review"]["reviewers"][0]["due_at"][:10] if held.get("review") else "-"
    print(f"   release {held['id']}: {status}, state {held['state']} (review due {due})")
    r = http.get(f"/v1/releases/{held['id']}", headers=bearer(dashboard))
    print(f"   the dashboard asks for it: {r.status_code} {r.json().get('type', '')}")

    print("5. The health department's data manager lists what awaits review and reads it.")
    reviewer = token(http, credentials, "health-data-manager")
    r = http.get("/v1/reviews", headers=bearer(reviewer))
    r.raise_for_status()
    print(f"   awaiting review: {[item['id'] for item in r.json()]}")
    r = http.get(f"/v1/releases/{held['id']}/review", headers=bearer(reviewer))
    r.raise_for_status()
    changes = r.json()["changes"]
    print(
        f"   {len(r.json()['rows'])} cells as they would be published; against the last "
        f"published release {changes['against']}: {changes['counts']}"
    )

    print("6. ... and approves it: every reviewer has approved, so it is published.")
    r = http.post(f"/v1/releases/{held['id']}/review/approve", headers=bearer(reviewer))
    r.raise_for_status()
    print(f"   state {r.json()['state']}")

    print("7. The dashboard reads it now.")
    r = http.get(f"/v1/releases/{held['id']}", headers=bearer(dashboard))
    r.raise_for_status()
    _show_table(r.json())
