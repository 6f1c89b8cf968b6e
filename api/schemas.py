"""Request and response bodies of the public API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aggregation.definition import Question
from policy.vocabulary import DisclosureMethod, OrganizationKind

# Bounds of every integer of the API, so that a huge number is a 422, never a database overflow:
# versions are 32-bit columns; log indices and tree sizes 64-bit ones, kept within the integers a
# JSON client represents exactly (2^53 - 1).
MAX_VERSION = 2**31 - 1
MAX_INDEX = 2**53 - 1
MAX_PAGE = 2**31 - 1


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OrganizationIn(_In):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    name: str = Field(min_length=1, max_length=200)
    kind: OrganizationKind


class OrganizationOut(BaseModel):
    id: str
    name: str
    kind: str


class ClientIn(_In):
    organization: str
    name: str = Field(min_length=1, max_length=200)
    role: str | None = None
    scopes: list[str] = Field(default_factory=list)
    token_endpoint_auth_method: Literal[
        "client_secret_basic", "client_secret_post", "private_key_jwt"
    ] = "client_secret_basic"
    jwks: dict[str, Any] | None = None
    client_id: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")


class ClientOut(BaseModel):
    client_id: str
    organization: str
    name: str
    role: str
    scopes: list[str]
    token_endpoint_auth_method: str
    disabled: bool
    client_secret: str | None = Field(
        default=None, description="shown once, at creation or rotation"
    )


class JwksIn(_In):
    keys: list[dict[str, Any]]


class ApprovalIn(_In):
    version: int = Field(ge=1, le=MAX_VERSION)
    content_hash: str


class StatusChangeIn(_In):
    reason: str | None = Field(default=None, max_length=500)


class ReleaseIn(_In):
    dimensions: list[str] | None = None
    method: DisclosureMethod | None = None
    dry_run: bool = Field(
        default=False,
        description="true: answer 200 with what the request would do (a ReleasePreviewOut: "
        "the method, the privacy budgets it would charge and what would remain) without "
        "computing, storing or charging anything; a request that would be refused is refused "
        "the same way",
    )


class ResourceIn(_In):
    datasets: list[str] = Field(default_factory=list, max_length=20)
    agreement: str | None = None
    fields: list[str] | None = Field(default=None, max_length=500)
    dimensions: list[str] | None = Field(default=None, max_length=20)
    geography: str | None = None
    method: str | None = None
    linked_datasets: list[str] = Field(default_factory=list, max_length=20)
    cohort_datasets: list[str] = Field(default_factory=list, max_length=20)


class ContextIn(_In):
    purpose: str | None = None
    recipients: list[str] | None = Field(default=None, max_length=100)


class DecideIn(_In):
    """What would happen if ``client_id`` (by default, the caller) did ``action``."""

    client_id: str | None = None
    action: str
    resource: ResourceIn = Field(default_factory=ResourceIn)
    context: ContextIn = Field(default_factory=ContextIn)
    at: datetime | None = None
    draft: dict[str, Any] | None = Field(
        default=None, description="an agreement document to evaluate as if it were active"
    )


# -- responses ------------------------------------------------------------------------------------
# Every route declares one of these (or a model above) as its response model. They allow extra
# members, so that a field added later is not a breaking change for a generated client.


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class HealthOut(_Out):
    status: str


class ReadyOut(_Out):
    status: str
    checks: dict[str, str]


class WhoAmIOut(_Out):
    client_id: str
    organization: str
    organization_kind: str
    scopes: list[str]


class ProblemTypeOut(_Out):
    type: str
    status: int
    title: str
    description: str


class TokenOut(_Out):
    access_token: str
    token_type: str
    expires_in: int
    scope: str | None = None


class IntrospectionOut(_Out):
    active: bool


class RevocationOut(_Out):
    """Empty on success (RFC 7009)."""


class ServerMetadataOut(_Out):
    issuer: str
    token_endpoint: str


class JwksOut(_Out):
    keys: list[dict[str, Any]]


class AgreementRef(_Out):
    id: str
    version: int


class WithdrawalOut(_Out):
    requested_at: str
    effective_at: str
    state: Literal["scheduled", "effective"] = Field(
        description="scheduled: the submission stays in use until effective_at (the agreement's "
        "withdrawal.notice_days); effective: it is out of every release from effective_at on"
    )


class DatasetOut(_Out):
    """A dataset as its governing agreement defines it: the fields as a Frictionless Table
    Schema (``schema``, Backbone's own terms under ``x-backbone``), and what governs it."""

    name: str
    title: str | None
    description: str | None
    provider: str
    access: str
    agreement: dict[str, Any]
    periods_open: list[str] | None
    formats: list[str]
    links: dict[str, str]
    schema_: dict[str, Any] = Field(alias="schema")


class CsvDialectOut(_Out):
    """How a CSV body was read: its delimiter, told from the header (',', ';' or a tab)."""

    delimiter: str


class FieldQualityOut(_Out):
    present: int
    missing: int
    completeness: float = Field(description="present / rows, 0 to 1")


class GroupRowsOut(_Out):
    """Rows per value of one field (the period field or a geography dimension)."""

    field: str
    rows: dict[str, int]
    other_rows: int | None = Field(
        default=None, description="rows of the values beyond the 500 most frequent"
    )


class QualityWarningOut(_Out):
    """A warning: never blocks. Besides code and message, the numbers of its kind: ``rows``,
    ``previous_rows``, ``drop``, ``submission`` (rows-dropped; and ``field``, ``geography`` for
    geography-rows-dropped), ``submissions`` (period-overlap), ``count``, ``submissions``
    (duplicate-keys), ``days_late``, ``due`` (late)."""

    code: Literal[
        "rows-dropped", "geography-rows-dropped", "duplicate-keys", "period-overlap", "late"
    ]
    message: str


class QualityOut(_Out):
    """The data-quality report of an accepted submission: counts, never values."""

    rows: int
    fields: dict[str, FieldQualityOut]
    periods: GroupRowsOut | None
    geographies: dict[str, GroupRowsOut | None]
    warnings: list[QualityWarningOut]


class ReceiptOut(_Out):
    id: str
    dataset: str
    agreement: AgreementRef
    row_count: int
    body_sha256: str
    received_at: str
    status: str
    audit_index: int | None
    replaces: str | None
    period: str | None
    csv: CsvDialectOut | None = None
    withdrawal: WithdrawalOut | None
    quality: QualityOut | None = Field(
        default=None, description="the data-quality report (null for submissions made before it)"
    )


class UploadOut(_Out):
    """A resumable upload (tus) as its creator reads it: GET /v1/uploads/{id}."""

    id: str
    dataset: str
    state: Literal["receiving", "complete", "refused", "expired"]
    offset: int
    length: int
    created_at: datetime
    expires_at: datetime
    submission: ReceiptOut | None = Field(
        default=None, description="the receipt, once the upload is complete and stored"
    )
    problem: dict[str, Any] | None = Field(
        default=None, description="the problem document, when the upload was refused"
    )


class ReceiptPage(_Out):
    items: list[ReceiptOut]
    next: str | None


class JsonSchemaOut(_Out):
    """A JSON Schema document (draft 2020-12) with the vocabulary in ``x-vocabulary``."""


class VersionStatus(_Out):
    version: int
    status: str


class AgreementSummaryOut(_Out):
    id: str
    title: str
    latest_version: int
    versions: list[VersionStatus]


class VersionOut(_Out):
    agreement: str
    version: int
    status: str
    content_hash: str
    effective: str
    expires: str
    created_at: str
    activated_at: str | None
    ended_at: str | None
    approved_by: list[str] | None = None
    awaiting: list[str] | None = None


class VersionDocumentOut(VersionOut):
    document: dict[str, Any]


class HistoryEntry(_Out):
    version: int
    status: str
    at: str
    by: str | None


class AgreementOut(_Out):
    id: str
    title: str
    versions: list[VersionOut]
    history: list[HistoryEntry]


class GoverningOut(_Out):
    agreement: str
    at: str
    version: VersionOut | None


class LintOut(_Out):
    uid: str
    content_hash: str
    findings: list[dict[str, Any]]


class OdrlOut(_Out):
    """An ODRL 2.2 policy in JSON-LD (``application/ld+json``), its context embedded."""


class DecisionOut(_Out):
    principal: str
    at: str
    decision: dict[str, Any]
    breaks: list[dict[str, Any]] | None = None


class CodeListSummaryOut(_Out):
    id: str
    version: int
    ref: str
    title: str
    kind: str
    code_count: int
    content_hash: str


class CodeListOut(CodeListSummaryOut):
    codes: list[dict[str, Any]]


class IndicatorOut(_Out):
    id: str
    version: int
    title: str


ReleaseState = Literal["published", "pending_review", "objected"]


class ReviewerOut(_Out):
    organization: str
    due_at: str
    on_timeout: Literal["publish", "hold"]
    decision: Literal["approve", "object"] | None
    decided_at: str | None
    reason: str | None = Field(
        default=None, description="reviewers and the requesting organization only"
    )


class ReviewSummaryOut(_Out):
    """The providers' review of a release (``null`` when no agreement required one)."""

    state: ReleaseState
    published_at: str | None
    reviewers: list[ReviewerOut]
    awaiting: list[str]


class ReleaseSummaryOut(_Out):
    id: str
    indicator: str
    indicator_version: int
    method: str
    dimensions: list[str]
    parameters: dict[str, Any]
    created_at: str
    audit_index: int | None
    state: ReleaseState
    published_at: str | None
    review: ReviewSummaryOut | None = None


class JobProgressOut(_Out):
    fraction: float = Field(ge=0, le=1, description="the share of the work done")
    phase: Literal["queued", "reading", "computing", "protecting", "storing", "done"] = Field(
        description="reading (the request decided, the records in scope read and decrypted), "
        "computing (the counts; by differential privacy the budget charge and the noise), "
        "protecting (suppression and its audit), storing; done when finished"
    )


class JobOut(_Out):
    """A release computed in the background (``/v1/jobs/{id}``): readable by the requesting
    organization only. ``release`` is set once it has succeeded (the release itself is read at
    ``/v1/releases/{id}``), ``problem`` (an RFC 9457 document) once it has failed."""

    id: str
    kind: Literal["release"]
    state: Literal["queued", "running", "succeeded", "failed"]
    progress: JobProgressOut
    indicator: str
    dimensions: list[str] | None
    method: str | None
    attempts: int
    created_at: str
    started_at: str | None
    updated_at: str
    finished_at: str | None
    release: ReleaseSummaryOut | None = None
    problem: dict[str, Any] | None = None


class ReleaseHeldOut(ReleaseSummaryOut):
    """A release stored and held for its data providers' review: no cells until published."""


class ReleaseDocumentOut(_Out):
    """A release as JSON: ``headers`` and ``rows`` (like DHIS2's analytics), a ``pager`` and the
    release's ``provenance``, with its ``state`` and ``review``. CSV and SDMX-CSV by
    ``Accept``."""

    headers: list[dict[str, Any]]
    rows: list[list[Any]]
    pager: dict[str, Any]
    provenance: dict[str, Any]
    state: ReleaseState | None = None
    review: ReviewSummaryOut | None = None


class ReviewDecisionIn(_In):
    reason: str | None = Field(
        default=None,
        max_length=2000,
        description="why (required to object); seen by the reviewers and the requester only",
    )


class ChangeOut(_Out):
    """One cell against the last published release: ``previous`` and ``new`` value and status,
    and ``change`` (changed, unchanged, added, removed); the dimension labels as members."""

    previous: dict[str, Any] | None
    new: dict[str, Any] | None
    change: Literal["changed", "unchanged", "added", "removed"]


class ChangesOut(_Out):
    against: str | None
    counts: dict[str, int]
    cells: list[ChangeOut]


class ReviewDocumentOut(ReleaseDocumentOut):
    """A reviewer's view: the cells exactly as they are (or would be) published, the reviews,
    and what changed against the last published release of the same indicator and
    dimensions."""

    id: str
    indicator: str
    changes: ChangesOut


class ReviewDecisionOut(ReleaseSummaryOut):
    """The release after the decision: its state and reviews."""


class ReviewItemOut(ReleaseSummaryOut):
    due_at: str
    on_timeout: Literal["publish", "hold"]
    decision: Literal["approve", "object"] | None
    decided_at: str | None


class BudgetChargeOut(_Out):
    """One privacy budget a release would charge, and its state now."""

    agreement: str
    dataset: str
    period: str
    epsilon: float = Field(description="what the release would spend from this budget")
    epsilon_limit: float
    epsilon_spent: float
    epsilon_remaining: float
    epsilon_remaining_after: float = Field(description="what would remain after the release")
    max_share_per_release: float | None = Field(
        description="the agreement's cap on the share of this budget one release may take"
    )


class ReleasePreviewOut(_Out):
    """What a release request would do (``"dry_run": true``): nothing was computed, stored or
    charged."""

    dry_run: Literal[True]
    indicator: str
    indicator_version: int
    method: str
    dimensions: list[str]
    agreements: list[dict[str, Any]]
    outcome: Literal["compute", "stored"] = Field(
        description="compute: a new release would be computed; stored: the same release is "
        "stored and would be returned, spending nothing"
    )
    stored_release: str | None
    submissions: int = Field(description="how many submissions the release would use")
    epsilon: float | None = Field(
        description="the privacy loss the release would spend from each budget it charges "
        "(differential privacy only)"
    )
    charges: list[BudgetChargeOut]
    summary: str


class SeriesOut(_Out):
    indicator: str
    version: int
    title: str
    unit: str
    direction: str
    period_dimension: str | None
    filters: dict[str, list[str]]
    baseline: dict[str, Any] | None
    target: dict[str, Any] | None
    points: list[dict[str, Any]]
    releases: list[str]


class PerformanceMeasureOut(_Out):
    """A performance measure of a partner's program, with its series for the caller."""

    id: str
    title: str
    program: str
    program_title: str
    organization: str
    question: Question
    unit: str
    direction: str
    series: SeriesOut


class BudgetOut(_Out):
    agreement: str
    dataset: str
    period: str
    epsilon_limit: float
    epsilon_spent: float
    epsilon_remaining: float
    updated_at: str


class EventPage(_Out):
    items: list[dict[str, Any]]
    next: int | None


class CheckpointOut(_Out):
    origin: str
    tree_size: int
    root_hash: str
    time: str
    key_id: str
    note: str


class PublicKeyOut(_Out):
    origin: str
    algorithm: str
    key_id: str
    vkey: str
    pem: str


class InclusionProofOut(_Out):
    index: int
    tree_size: int
    leaf_hash: str
    proof: list[str]
    entry: dict[str, Any]
    checkpoint: CheckpointOut | None


class ConsistencyProofOut(_Out):
    first: int
    second: int
    proof: list[str]
    first_checkpoint: CheckpointOut | None
    checkpoint: CheckpointOut | None


class SigningKeyOut(_Out):
    kid: str


class WebhookIn(_In):
    url: str = Field(min_length=1, max_length=2048)
    event_types: list[Annotated[str, Field(max_length=64)]] = Field(min_length=1, max_length=50)
    organization: str | None = Field(
        default=None, description="administrators only: the organization it is for"
    )
    description: str | None = Field(default=None, max_length=200)


class WebhookOut(_Out):
    id: str
    organization: str
    url: str
    event_types: list[str]
    description: str | None = None
    created_at: str
    secret: str | None = Field(
        default=None, description="the signing secret, shown once, when the webhook is created"
    )


class DeliveryOut(_Out):
    id: str
    webhook: str | None
    event: dict[str, Any]
    state: Literal["pending", "delivered", "failed", "undeliverable", "cancelled"]
    obligation: str | None
    attempts: int
    next_attempt_at: str | None
    last_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: str | None
    cursor: int


class DeliveryPage(_Out):
    items: list[DeliveryOut]
    next: int | None
