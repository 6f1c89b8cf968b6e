"""Reading agreement documents from YAML or JSON."""

from __future__ import annotations

import json
from typing import Any

import yaml
from pydantic import ValidationError

from agreements.document import AgreementDocument
from agreements.errors import InvalidAgreement
from core import jsonscan


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc)


# Limits of an agreement document, checked before it is built (the real ones are a few KB and
# nest about eight levels): parsers recurse, and YAML aliases can make a small text stand for an
# exponentially large document ("billion laughs") once anything walks it.
MAX_DOCUMENT_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_NODES = 100_000


def _refuse(message: str) -> InvalidAgreement:
    return InvalidAgreement(
        "The agreement document exceeds a limit.",
        [{"code": "limit", "path": "", "message": message}],
    )


def check_limits(text: str, fmt: str) -> None:
    """Refuse, in time linear in its length, a document too large, too deep or (YAML) using
    aliases. YAML is checked on the parser's event stream, which does not recurse."""
    if len(text) > MAX_DOCUMENT_BYTES:
        raise _refuse(f"The document is longer than {MAX_DOCUMENT_BYTES} characters.")
    if fmt == "json":
        wrong = jsonscan.within(text.encode("utf-8"), MAX_DEPTH, MAX_NODES)
        if wrong is not None:
            raise _refuse(wrong)
        return
    depth = nodes = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise _refuse("YAML aliases (*name) are not supported in agreements.")
            if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise _refuse(f"The document nests deeper than {MAX_DEPTH} levels.")
            elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
                depth -= 1
            if isinstance(event, yaml.NodeEvent):
                nodes += 1
                if nodes > MAX_NODES:
                    raise _refuse(f"The document has more than {MAX_NODES} nodes.")
    except yaml.YAMLError:
        return  # not well-formed: safe_load reports it with its position


def parse_document(raw: bytes | str, fmt: str = "yaml") -> AgreementDocument:
    """Parse and validate a document; errors become one :class:`InvalidAgreement` with findings."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        raise InvalidAgreement(
            "The agreement is not UTF-8 text.",
            [{"code": "syntax", "path": "", "message": "the document must be UTF-8"}],
        ) from None
    check_limits(text, fmt)
    if "\x00" in text:
        raise _refuse("The document contains a NUL character.")
    try:
        data = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise InvalidAgreement(
            f"The agreement is not well-formed {fmt.upper()}.",
            [{"code": "syntax", "path": "", "message": str(exc).splitlines()[0][:200]}],
        ) from None
    if fmt == "yaml" and "\\u0000" in json.dumps(data, default=str):
        # A YAML escape ("\0") made one: PostgreSQL stores no NUL in text or JSON.
        raise _refuse("The document contains a NUL character.")
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
