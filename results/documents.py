"""What a writer sends: results, their indicators, stories, strategies, partners' roles and
action items, bounded and strict (an unknown field is an error, not ignored)."""

from __future__ import annotations

from datetime import date
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from results.vocabulary import ActionStatus, Audience, IndicatorRole

Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
Title = Annotated[str, Field(min_length=1, max_length=300)]
Text = Annotated[str, Field(max_length=20_000)]
MAX_ITEMS = 50


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ResultIndicatorIn(_In):
    indicator: Slug
    role: IndicatorRole = IndicatorRole.PRIMARY


class ResultIn(_In):
    id: Slug
    title: Title = Field(description="a condition of well-being of a population")
    description: Text = ""
    population: Annotated[str, Field(max_length=300)] = ""
    geography: Annotated[str, Field(max_length=300)] = ""
    public: bool = False
    indicators: list[ResultIndicatorIn] = Field(default_factory=list, max_length=MAX_ITEMS)


class StoryVersionIn(_In):
    title: Title
    body: Annotated[str, Field(min_length=1, max_length=20_000)] = Field(
        description="plain text (never rendered as HTML)"
    )
    as_of: date = Field(description="the date the story speaks as of")


class StoryIn(StoryVersionIn):
    audience: Audience = Audience.INITIATIVE
    indicator: Slug | None = Field(
        default=None, description="one of the result's indicators the story is about"
    )
    release: Annotated[str, Field(max_length=64)] | None = Field(
        default=None, description="a release of one of the result's indicators"
    )


class EvidenceLink(_In):
    title: Title
    url: Annotated[str, Field(min_length=1, max_length=2048)]

    @field_validator("url")
    @classmethod
    def _web_address(cls, value: str) -> str:
        # Only web addresses: a javascript: or data: link on a public page is an attack.
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.netloc or " " in value:
            raise ValueError("an evidence link is an http or https URL")
        return value


class StrategyIn(_In):
    title: Title
    description: Text = ""
    evidence: list[EvidenceLink] = Field(default_factory=list, max_length=MAX_ITEMS)
    partners: list[Slug] = Field(default_factory=list, max_length=MAX_ITEMS)


class Commitment(_In):
    text: Annotated[str, Field(min_length=1, max_length=1000)]
    due: date | None = None


class PartnerRoleIn(_In):
    role: Annotated[str, Field(min_length=1, max_length=1000)]
    commitments: list[Commitment] = Field(default_factory=list, max_length=MAX_ITEMS)


class ActionIn(_In):
    title: Title
    owner: Slug = Field(description="the organization that carries the action")
    due: date | None = None
    status: ActionStatus = ActionStatus.PLANNED


class ActionStatusIn(_In):
    status: ActionStatus
