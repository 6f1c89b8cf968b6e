"""Errors of the agreement lifecycle."""

from __future__ import annotations

from typing import Any

from core.errors import Conflict, InvalidInput


class InvalidAgreement(InvalidInput):
    kind = "invalid-agreement"
    title = "The agreement document is invalid"

    def __init__(self, detail: str, findings: list[dict[str, Any]]) -> None:
        super().__init__(detail, extra={"findings": findings})


class AgreementStateConflict(Conflict):
    kind = "agreement-state-conflict"
    title = "The agreement is not in a state that allows this"


class CodeListConflict(Conflict):
    kind = "code-list-conflict"
    title = "The code list already has this content"
