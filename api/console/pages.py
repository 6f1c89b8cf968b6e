"""Rendering console pages: the site's templates, the signed-in person in the header, and pages
that are never stored by a browser or a proxy (they are one person's)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from api.pages.routes import render
from core.errors import DomainError, InvalidInput


def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A console page (``template`` under ``console/``) for the person signed in, if any."""
    response = render(
        request,
        template,
        status,
        initiative=getattr(request.state, "initiative", "Backbone"),
        # set by api.console.auth.signed_in
        console=getattr(request.state, "console", None),
        nav="console",
        **context,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def error_page(
    request: Request, exc: DomainError, status: int, headers: dict[str, str]
) -> Response:
    """A refusal as a page: the error's title and its detail, which never holds a value."""
    response = page(
        request, "console/error.html", status, title=exc.title, detail=exc.detail, kind=exc.kind
    )
    response.headers.update(headers)
    return response


def confirm_page(
    request: Request,
    *,
    title: str,
    explanation: Sequence[str],
    action_url: str | None,
    button: str,
    back_url: str,
    back_text: str = "Go back",
    section: str | None = None,
    section_title: str | None = None,
    confirm: tuple[str, str] | None = None,
    hidden: Mapping[str, str] | None = None,
    facts: Sequence[tuple[str, str]] = (),
    done: str | None = None,
    form_id: str = "confirm-form",
    status: int = 200,
) -> HTMLResponse:
    """The page before an action that cannot be taken back: what it does (``explanation``, one
    paragraph each), what it acts on (``facts``, label and value), and a POST form to
    ``action_url`` carrying the session's CSRF token, ``hidden`` fields and, with ``confirm``
    (value, label), a box to tick whose value the route checks with :func:`confirmed`; ``done``,
    the note of a form that succeeded and came back here. Without ``action_url`` (nothing left
    to do: already done, say) the page explains and links back, with no form."""
    return page(
        request,
        "console/confirm.html",
        status,
        title=title,
        section=section,
        section_title=section_title,
        explanation=list(explanation),
        facts=list(facts),
        action_url=action_url,
        button=button,
        back_url=back_url,
        back_text=back_text,
        confirm=confirm,
        hidden=dict(hidden or {}),
        done=done,
        form_id=form_id,
    )


def confirmed(value: str | None, expected: str, message: str) -> None:
    """Refuse (400) a confirmed form whose box was not ticked: a form sent without the page."""
    if value != expected:
        raise InvalidInput(message)
