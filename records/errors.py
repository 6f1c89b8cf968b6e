"""Errors of record ingest. Their messages name rows, fields and codes, never values."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    PayloadTooLarge,
    UnsupportedMediaType,
)


class SubmissionRejected(InvalidInput):
    """The body was read but its records do not satisfy the agreement; carries the error report."""

    kind = "submission-rejected"
    title = "The submission does not satisfy the dataset's schema"

    def __init__(self, detail: str, report: dict[str, Any], rows: int = 0) -> None:
        super().__init__(detail, extra={"report": report})
        # How many records were read (every one of them refused); not part of the answer.
        self.rows = rows
        # Set by the route that knows where the body went: it notifies the rejection in the
        # transaction that records the refusal (api.deps.record_refusal).
        self.notice: Callable[[Any, Any], None] | None = None


class MalformedBody(InvalidInput):
    kind = "malformed-body"
    title = "The body could not be parsed"


class TooManyColumns(MalformedBody):
    """A header with more columns than the dataset has fields: refused before it is examined."""

    kind = "too-many-columns"
    title = "The header has more columns than the dataset has fields"


class AmbiguousDelimiter(MalformedBody):
    """The CSV header names the dataset's fields when split by more than one delimiter."""

    kind = "ambiguous-delimiter"
    title = "The CSV delimiter could not be told from the header"


class UnsupportedEncoding(UnsupportedMediaType):
    kind = "unsupported-encoding"
    title = "Unsupported character or content encoding"


class SubmissionTooLarge(PayloadTooLarge):
    kind = "payload-too-large"


class IncompleteBody(InvalidInput):
    """The connection ended before the declared body did."""

    kind = "malformed-body"
    title = "The body could not be parsed"


class IdempotencyConflict(DomainError):
    kind = "idempotency-key-reused"
    title = "The Idempotency-Key was used with a different body"


class IdempotencyInFlight(Conflict):
    kind = "idempotency-in-flight"
    title = "A request with this Idempotency-Key is still being processed"


class ReplacementInvalid(Conflict):
    kind = "replacement-invalid"
    title = "The submission cannot replace the one it names"


class WithdrawalNotAllowed(Forbidden):
    """The governing agreement says ``withdrawal.allowed: false``; the detail names it."""

    kind = "withdrawal-not-allowed"
    title = "The agreement does not allow withdrawing submissions"


class UploadOffsetMismatch(Conflict):
    """A tus PATCH whose Upload-Offset is not where the upload stands (or another PATCH of the
    same upload is still running)."""

    kind = "upload-offset-mismatch"
    title = "Upload-Offset does not match the upload's offset"


class UploadExpired(DomainError):
    kind = "upload-expired"
    title = "The upload has expired"


class TusVersionUnsupported(DomainError):
    kind = "tus-version-unsupported"
    title = "Unsupported Tus-Resumable version"
