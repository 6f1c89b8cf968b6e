"""Shared code lists: the values of a dimension (neighborhoods, school years, race/ethnicity
categories) defined once by the initiative and referred to by agreements, pinned to a version.

A field refers to a code list with ``constraints: {codelist: "neighborhoods@1"}``. The version is
required: the content hash that parties approve covers the reference, and a stored code list
version never changes, so the reference fixes the allowed values exactly like an ``enum``.

This module is pure (no database): the document model, the lint and the compiler use it; the
service that stores code lists is :mod:`agreements.codelist_service`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_CODES = 10_000
MAX_CODE_LENGTH = 200
SLUG = r"[a-z0-9][a-z0-9-]{0,63}"
REF_PATTERN = rf"^({SLUG})@([1-9][0-9]{{0,5}})$"
_REF = re.compile(REF_PATTERN)
_SLUG = re.compile(rf"^{SLUG}$")

CodeListKind = Literal["geography", "period", "category"]


class Code(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(min_length=1, max_length=MAX_CODE_LENGTH)
    label: str | None = Field(default=None, min_length=1, max_length=300)


class CodeListIn(BaseModel):
    """A code list as its author writes it (YAML or JSON); the service numbers its version."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(pattern=rf"^{SLUG}$")]
    title: str = Field(min_length=1, max_length=300)
    description: str | None = Field(default=None, max_length=5000)
    standard: str | None = Field(
        default=None,
        max_length=500,
        description='the standard the codes follow, e.g. "OMB SPD 15 (1997)", or its URL',
    )
    kind: CodeListKind
    codes: list[Code] = Field(min_length=1, max_length=MAX_CODES)

    @model_validator(mode="after")
    def _unique(self) -> CodeListIn:
        seen: set[str] = set()
        for position, c in enumerate(self.codes):
            if c.code != c.code.strip():
                raise ValueError(f"code {position + 1} has leading or trailing spaces")
            if c.code in seen:
                # The position, not the code: a code list is public, but keep errors uniform.
                raise ValueError(f"code {position + 1} repeats an earlier code")
            seen.add(c.code)
        return self

    def content(self) -> dict[str, Any]:
        """What the content hash covers: everything the author wrote."""
        return self.model_dump(mode="json", exclude_none=True)

    def content_hash(self) -> str:
        canonical = json.dumps(self.content(), sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class ResolvedCodeList:
    """One stored version of a code list: what a reference to it means."""

    id: str
    version: int
    title: str
    kind: str
    codes: tuple[str, ...]
    standard: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"

    def snapshot(self) -> dict[str, Any]:
        """The form an agreement version keeps of each code list it refers to."""
        out: dict[str, Any] = {
            "title": self.title,
            "kind": self.kind,
            "codes": list(self.codes),
        }
        if self.standard is not None:
            out["standard"] = self.standard
        return out

    @classmethod
    def from_snapshot(cls, ref: str, data: Mapping[str, Any]) -> ResolvedCodeList:
        slug, version = parse_ref(ref)
        return cls(
            id=slug,
            version=version,
            title=str(data["title"]),
            kind=str(data["kind"]),
            codes=tuple(str(c) for c in data["codes"]),
            standard=data.get("standard"),
        )


@dataclass(frozen=True)
class CodeListCatalog:
    """What the caller of lint knows of code lists: the versions the document refers to that
    exist (by reference), and the latest version of every code list id it refers to."""

    resolved: Mapping[str, ResolvedCodeList] = field(default_factory=dict)
    latest: Mapping[str, int] = field(default_factory=dict)


def parse_ref(ref: str) -> tuple[str, int]:
    """``"neighborhoods@1"`` as ``("neighborhoods", 1)``; :class:`ValueError` otherwise."""
    match = _REF.match(ref)
    if match is None:
        if _SLUG.match(ref):
            raise ValueError(
                f"code list reference '{ref}' names no version: pin one, e.g. '{ref}@1', so that "
                "the approved content hash fixes the allowed values"
            )
        raise ValueError(
            "a code list reference is the list's id and version, e.g. 'neighborhoods@1'"
        )
    return match.group(1), int(match.group(2))


class UnresolvedCodeList(LookupError):
    """A field refers to a code list version that was not resolved (a programming error for a
    stored version, which keeps what it refers to; an input error for a draft)."""

    def __init__(self, ref: str) -> None:
        super().__init__(ref)
        self.ref = ref


def field_enum(
    constraints: Any, codelists: Mapping[str, ResolvedCodeList] | None
) -> list[Any] | None:
    """The allowed values of a field: its ``enum``, or the codes of the code list it refers to.

    ``constraints`` is a document field's :class:`agreements.document.FieldConstraints`. Raises
    :class:`UnresolvedCodeList` when the field refers to a code list ``codelists`` lacks, so that
    nothing downstream ever mistakes an unresolved reference for "any value"."""
    ref = constraints.codelist
    if ref is None:
        return list(constraints.enum) if constraints.enum is not None else None
    found = (codelists or {}).get(ref)
    if found is None:
        raise UnresolvedCodeList(ref)
    return list(found.codes)


def references(document: Any) -> set[str]:
    """Every code list reference in an agreement document."""
    return {
        f.constraints.codelist
        for ds in document.datasets
        for f in ds.fields
        if f.constraints.codelist is not None
    }
