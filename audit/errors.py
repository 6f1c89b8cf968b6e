"""Errors of the access log."""

from __future__ import annotations

from core.errors import DomainError


class AuditIntegrityError(DomainError):
    """The stored log contradicts itself or a checkpoint it signed: nothing is signed or served.

    Raised when a row is missing from the middle of the log, or when the stored tree no longer
    hashes to the root of an earlier signed checkpoint (someone altered the database).
    """

    kind = "audit-log-inconsistent"
    title = "The audit log failed an integrity check"
