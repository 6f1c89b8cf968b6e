"""Reading agreement documents from YAML or JSON."""

from __future__ import annotations

import json
from typing import Any

import yaml
from pydantic import ValidationError

from agreements.document import AgreementDocument
from agreements.errors import InvalidAgreement


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc)


def parse_document(raw: bytes | str, fmt: str = "yaml") -> AgreementDocument:
    """Parse and validate a document; errors become one :class:`InvalidAgreement` with findings."""
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    try:
        data = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise InvalidAgreement(
            f"The agreement is not well-formed {fmt.upper()}.",
            [{"code": "syntax", "path": "", "message": str(exc).splitlines()[0][:200]}],
        ) from None
    return document_from_data(data)


def document_from_data(data: Any) -> AgreementDocument:
    if not isinstance(data, dict):
        raise InvalidAgreement(
            "The agreement must be a mapping.",
            [{"code": "type", "path": "", "message": "expected an object at the top level"}],
        )
    try:
        return AgreementDocument.model_validate(data)
    except ValidationError as exc:
        findings = [
            {"code": "schema", "path": _location(err["loc"]), "message": err["msg"]}
            for err in exc.errors(include_input=False, include_url=False)
        ]
        raise InvalidAgreement(
            f"The agreement does not match the schema ({len(findings)} problem(s)).", findings
        ) from None
