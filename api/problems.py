"""The catalogue of problem types. ``type`` is ``/problems/<kind>``; each kind is documented at
that path by the service itself, and never changes meaning."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ProblemType:
    status: int
    title: str
    description: str


PROBLEMS: dict[str, ProblemType] = {
    "not-found": ProblemType(
        404, "Resource not found", "No resource exists at this path, or it is not visible to you."
    ),
    "method-not-allowed": ProblemType(
        405,
        "Method not allowed",
        "The resource exists but does not support this HTTP method; see the Allow header.",
    ),
    "malformed-json": ProblemType(
        400, "Malformed JSON", "The request body is not well-formed JSON."
    ),
    "json-too-complex": ProblemType(
        400,
        "The JSON body nests too deeply or holds too many items",
        "JSON request bodies may nest at most 32 levels and hold at most 100,000 items; "
        "they are checked before they are parsed.",
    ),
    "validation-error": ProblemType(
        422,
        "Request validation failed",
        "Parameters or body fields are missing or of the wrong type; see errors.",
    ),
    "invalid-input": ProblemType(
        422,
        "The request content is invalid",
        "The request is well-formed but its content cannot be accepted.",
    ),
    "payload-too-large": ProblemType(
        413,
        "Request body too large",
        "The body, or its decompressed form, exceeds the configured limit.",
    ),
    "unsupported-media-type": ProblemType(
        415, "Unsupported media type", "The Content-Type is not accepted by this endpoint."
    ),
    "unsupported-encoding": ProblemType(
        415,
        "Unsupported character or content encoding",
        "Bodies must be UTF-8, optionally gzip-compressed.",
    ),
    "not-acceptable": ProblemType(
        406, "Not acceptable", "None of the media types in Accept can be produced."
    ),
    "malformed-body": ProblemType(
        400,
        "The body could not be parsed",
        "The body is empty, truncated or not well-formed for its Content-Type.",
    ),
    "ambiguous-delimiter": ProblemType(
        400,
        "The CSV delimiter could not be told from the header",
        "The header names the dataset's fields when split by more than one of ',', ';' and tab. "
        "Send the file with commas as delimiters. Nothing was stored.",
    ),
    "too-many-columns": ProblemType(
        422,
        "The header has more columns than the dataset has fields",
        "Refused as soon as the header was read: it cannot succeed. Nothing was stored.",
    ),
    "submission-rejected": ProblemType(
        422,
        "The submission does not satisfy the dataset's schema",
        "See report: rows, fields and error codes, never values. Nothing was stored.",
    ),
    "invalid-token": ProblemType(
        401,
        "Authentication required",
        "The access token is missing, malformed, expired, revoked, or its client is disabled.",
    ),
    "insufficient-scope": ProblemType(
        403, "The access token lacks a required scope", "Every scope in required_scopes is needed."
    ),
    "forbidden": ProblemType(403, "Not allowed", "Your organization may not do this."),
    "csrf-refused": ProblemType(
        403,
        "The form is not from this session",
        "A state-changing console form must carry its session's CSRF token; reload the page.",
    ),
    "sign-in-failed": ProblemType(
        401, "Sign-in failed", "Wrong username, password or code (which one is not said)."
    ),
    "sso-failed": ProblemType(
        401,
        "Sign-in with the identity provider failed",
        "The organization's identity provider did not vouch for a person set up to sign in here.",
    ),
    "object-access-denied": ProblemType(
        403, "Not allowed on this object", "The object belongs to another organization."
    ),
    "policy-denied": ProblemType(
        403,
        "Denied by the governing data-sharing agreements",
        "See decision: the rules, agreement versions and failed constraints that decided.",
    ),
    "conflict": ProblemType(
        409,
        "Conflict with the current state of the resource",
        "The resource is not in a state that allows this request.",
    ),
    "agreement-state-conflict": ProblemType(
        409,
        "The agreement is not in a state that allows this",
        "Check the version's status and content hash.",
    ),
    "invalid-agreement": ProblemType(
        422,
        "The agreement document is invalid",
        "See findings: each has a code, a path and a message.",
    ),
    "code-list-conflict": ProblemType(
        409,
        "The code list already has this content",
        "The latest version of the code list holds exactly these codes and terms; a new "
        "version is stored only when something changes.",
    ),
    "invalid-indicator": ProblemType(
        422,
        "The indicator definition is invalid",
        "The definition refers to unknown datasets or fields, or is inconsistent.",
    ),
    "invalid-expression": ProblemType(
        422, "The filter expression is invalid", "See the filter grammar in the README."
    ),
    "idempotency-key-reused": ProblemType(
        422,
        "The Idempotency-Key was used with a different body",
        "Use a new key for a different submission.",
    ),
    "idempotency-in-flight": ProblemType(
        409,
        "A request with this Idempotency-Key is still being processed",
        "Retry after the first request has completed.",
    ),
    "upload-offset-mismatch": ProblemType(
        409,
        "Upload-Offset does not match the upload's offset",
        "Ask HEAD /v1/uploads/{id} for the offset (another PATCH of the upload may still be "
        "running) and send the bytes from there.",
    ),
    "upload-expired": ProblemType(
        410,
        "The upload has expired",
        "A resumable upload must be completed before its Upload-Expires; create a new one.",
    ),
    "tus-version-unsupported": ProblemType(
        412,
        "Unsupported Tus-Resumable version",
        "Send Tus-Resumable: 1.0.0 (see OPTIONS /v1/uploads).",
    ),
    "replacement-invalid": ProblemType(
        409,
        "The submission cannot replace the one it names",
        "A replacement must name an accepted submission of your organization, for the same "
        "dataset and period.",
    ),
    "release-not-published": ProblemType(
        409,
        "The release is not published",
        "It is held for review by the organizations that provide its data, or one of them "
        "objected to it; see state. Recipients read a release once it is published.",
    ),
    "review-closed": ProblemType(
        409,
        "The review of this release is closed",
        "The release was published or objected to, or your organization has already decided.",
    ),
    "withdrawal-not-allowed": ProblemType(
        403,
        "The agreement does not allow withdrawing submissions",
        "The governing agreement's term withdrawal.allowed is false (the detail names the "
        "agreement and version); nothing was changed. Only an amendment of the agreement, "
        "approved by its parties, can change the term.",
    ),
    "webhook-url-refused": ProblemType(
        422,
        "The webhook URL is not allowed",
        "Webhook URLs must be https and reach a public address, or a host an administrator "
        "allowed (BACKBONE_WEBHOOK_ALLOW_HOSTS); detail says why this one is refused.",
    ),
    "webhook-event-unknown": ProblemType(
        422,
        "Unknown webhook event type",
        "Subscribe to at least one of the event types listed in known.",
    ),
    "delivery-not-replayable": ProblemType(
        409,
        "The delivery cannot be replayed",
        "Only a delivered or failed delivery can be replayed; a pending one is still being sent.",
    ),
    "privacy-budget-exhausted": ProblemType(
        403,
        "The privacy budget does not allow this release",
        "See budget: the limit, what is spent and what the release would need.",
    ),
    "privacy-budget-share-exceeded": ProblemType(
        403,
        "One release may not take this much of a period's privacy budget",
        "An agreement's disclosure.privacy.max_share_per_release caps the share of a period's "
        "budget one release may take; see budget and term. Nothing was charged.",
    ),
    "invalid-dp-release": ProblemType(
        422,
        "The differentially private release cannot be planned or computed as asked",
        "Check the unit, dimensions and the agreements' privacy parameters.",
    ),
    "dp-release-failed": ProblemType(
        500,
        "The differentially private release could not be computed",
        "Nothing was released and the privacy budget was refunded.",
    ),
    "release-job-failed": ProblemType(
        500,
        "The release could not be computed",
        "The release job failed at every attempt for a reason that is not the request's (the "
        "database stayed unreachable, say); nothing was stored or charged. Request the release "
        "again, or quote the job id to the operator.",
    ),
    "linked-release-mismatch": ProblemType(
        409,
        "An earlier release does not match this data",
        "Linked releases must be of the same indicator version over the same submissions.",
    ),
    "filter-not-partition": ProblemType(
        422,
        "The filter is not a slice of the declared categories",
        "A suppressed indicator filters by the categories the agreement declares (attribute =="
        " value, joined by and). Exclusions, alternatives and thresholds on measures are for"
        " differentially private indicators, or are declared once as derived fields.",
    ),
    "population-too-detailed": ProblemType(
        422,
        "The population is too detailed to audit jointly",
        "Everything published from these records, with this release, would need a joint table"
        " larger than the audit can check. Use fewer dimensions or differential privacy.",
    ),
    "release-unprotectable": ProblemType(
        409,
        "The release could not be protected",
        "The suppression solver failed; nothing was released. Try fewer dimensions.",
    ),
    "data-destroyed": ProblemType(
        410,
        "The data has been destroyed",
        "The data was crypto-shredded after its agreement ended or it was withdrawn.",
    ),
    "rate-limited": ProblemType(
        429, "Too many requests", "Retry after the number of seconds in Retry-After."
    ),
    "audit-log-inconsistent": ProblemType(
        500,
        "The audit log failed an integrity check",
        "The stored log is missing events or no longer extends a checkpoint it signed; nothing "
        "was signed or served. Operators: compare an export with your saved checkpoints.",
    ),
    "service-not-ready": ProblemType(
        503,
        "The service is not ready",
        "The service has started but its database is unreachable or not migrated to the current "
        "schema (see /readyz); retry after the seconds in Retry-After. Operators: run "
        "`backbone migrate`.",
    ),
    "database-unavailable": ProblemType(
        503,
        "The database is unavailable",
        "The connection to the database was lost while the request was processed (a restart, "
        "a failover); nothing was committed. Retry after the seconds in Retry-After: reads, and "
        "requests with an Idempotency-Key, are safe to repeat.",
    ),
    "domain-error": ProblemType(
        400, "Request could not be completed", "The request could not be completed."
    ),
    "internal-error": ProblemType(
        500,
        "Internal server error",
        "An unexpected error occurred; quote the request id when reporting it.",
    ),
}


def problem_type(kind: str) -> str:
    return f"/problems/{kind}"


def problem_body(kind: str, detail: str, request_id: str | None) -> dict[str, Any]:
    """The RFC 9457 document of a problem of ``kind``."""
    spec = PROBLEMS[kind]
    body: dict[str, Any] = {
        "type": problem_type(kind),
        "title": spec.title,
        "status": spec.status,
        "detail": detail,
    }
    if request_id:
        body["instance"] = f"urn:backbone:request:{request_id}"
        body["request_id"] = request_id
    return body


async def send_problem(
    send: Callable[[dict[str, Any]], Awaitable[None]],
    kind: str,
    detail: str,
    request_id: str | None,
    retry_after: int | None = None,
) -> None:
    """Answer an ASGI request with a problem document, below the framework (middleware)."""
    raw = json.dumps(problem_body(kind, detail, request_id)).encode()
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(raw)).encode()),
    ]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": PROBLEMS[kind].status, "headers": headers})
    await send({"type": "http.response.body", "body": raw})
