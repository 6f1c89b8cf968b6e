"""Pages for people, served by Backbone itself: the initiative's public scorecard, a page per
result and per indicator with turn-the-curve charts, and embeds for partners' websites.

Server-rendered (Jinja2), readable without JavaScript, every asset served from here. They sit
at the floor of the JSON API and call the same services (see :mod:`api.pages.content`).
"""

from __future__ import annotations

import threading
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.pages import routes

STATIC = Path(__file__).parent / "static"


def install(app: FastAPI, *, warm: bool = True) -> None:
    """Add the pages and their assets to ``app``."""
    pages = routes.Pages()
    app.state.pages = pages
    app.router.routes.extend(routes.router.routes)
    app.mount("/static", StaticFiles(directory=STATIC), name="pages-static")
    if warm:
        # The chart engine takes about a second to start: the first page should not wait for it.
        threading.Thread(target=pages.charts.warm, name="charts-warm", daemon=True).start()
