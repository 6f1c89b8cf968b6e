"""The names of the actions the access log records: the one source of these strings.

Services name the action of each event they record, and routes name the action under which a
refused request is recorded (``api.deps.audited``); both use these members, and a test keeps the
names from being spelled out anywhere else. The values are stored in every event and hashed into
the log, so they never change: add a member, never rename one.
"""

from __future__ import annotations

from enum import StrEnum


class AuditAction(StrEnum):
    AGREEMENT_CREATE = "agreement.create"
    AGREEMENT_READ = "agreement.read"
    AGREEMENT_APPROVE = "agreement.approve"
    AGREEMENT_SUSPEND = "agreement.suspend"
    AGREEMENT_RESUME = "agreement.resume"
    AGREEMENT_TERMINATE = "agreement.terminate"
    AUDIT_READ = "audit.read"
    AUDIT_EXPORT = "audit.export"
    AUDIT_CHECKPOINT_READ = "audit.checkpoint.read"
    AUDIT_PROOF_INCLUSION = "audit.proof.inclusion"
    AUDIT_PROOF_CONSISTENCY = "audit.proof.consistency"
    CLIENT_CREATE = "client.create"
    CLIENT_ROTATE_SECRET = "client.rotate_secret"
    CLIENT_REGISTER_KEYS = "client.register_keys"
    CLIENT_DISABLE = "client.disable"
    DATASET_LIST = "dataset.list"
    DATASET_READ = "dataset.read"
    INDICATOR_DEFINE = "indicator.define"
    JOB_READ = "job.read"
    KEYS_REWRAP = "keys.rewrap"
    OAUTH_TOKEN = "oauth.token"
    OAUTH_REVOCATION = "oauth.revocation"
    OAUTH_INTROSPECTION = "oauth.introspection"
    ORGANIZATION_CREATE = "organization.create"
    POLICY_DECIDE = "policy.decide"
    RECORDS_PURGE = "records.purge"
    RELEASE_CREATE = "release.create"
    RELEASE_PREVIEW = "release.preview"
    RELEASE_QUEUE = "release.queue"
    RELEASE_READ = "release.read"
    RELEASE_HOLD = "release.hold"
    RELEASE_PUBLISH = "release.publish"
    RELEASE_REVIEW_READ = "release.review.read"
    RELEASE_REVIEW_APPROVE = "release.review.approve"
    RELEASE_REVIEW_OBJECT = "release.review.object"
    RELEASE_REVIEW_LIST = "release.review.list"
    RESULT_READ = "result.read"
    RESULT_WRITE = "result.write"
    RESULT_STRATEGY_WRITE = "result.strategy.write"
    RESULT_PARTNER_WRITE = "result.partner.write"
    RESULT_ACTION_WRITE = "result.action.write"
    STORY_READ = "story.read"
    STORY_WRITE = "story.write"
    SIGNING_KEY_ROTATE = "signing_key.rotate"
    SUBMISSION_CREATE = "submission.create"
    SUBMISSION_LIST = "submission.list"
    SUBMISSION_READ = "submission.read"
    SUBMISSION_WITHDRAW = "submission.withdraw"
    SUBMISSION_PURGE = "submission.purge"
    SUBMISSION_WITHDRAWAL_EFFECTIVE = "submission.withdrawal_effective"
    SUBMISSION_WITHDRAWAL_CANCEL = "submission.withdrawal_cancel"
    WEBHOOK_CREATE = "webhook.create"
    WEBHOOK_DELETE = "webhook.delete"
    WEBHOOK_DELIVER = "webhook.deliver"
    WEBHOOK_REPLAY = "webhook.replay"
