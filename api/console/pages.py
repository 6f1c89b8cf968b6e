"""Rendering console pages: the site's templates, the signed-in person in the header, and pages
that are never stored by a browser or a proxy (they are one person's)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from api.pages.routes import render
from core.errors import DomainError


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
