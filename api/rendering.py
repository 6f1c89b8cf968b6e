"""Release pages as bytes: JSON, CSV or SDMX-CSV, each page rendered once.

Published releases never change, so a rendered page (with its strong ETag and pager) is kept,
the most recently used first, by (release, state, format, filters, page, page size). Only pages
of a published release are ever rendered for a reader (``aggregation.reads.authorize_read``
refuses the others, and reviewers read a held one through ``aggregation.review``). One cache per application
(on its state): tests and workers own its lifetime.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from typing import Any

from aggregation import formats
from aggregation.reads import ReleaseView

Rendered = tuple[bytes, str, dict[str, Any]]


def _key(
    view: ReleaseView,
    fmt: str,
    filters: dict[str, frozenset[str]],
    page: int,
    page_size: int,
) -> tuple[Any, ...]:
    return (
        view.id,
        view.state,
        fmt,
        tuple(sorted((k, tuple(sorted(v))) for k, v in filters.items())),
        page,
        page_size,
    )


class RenderedPages:
    """Rendered release pages, at most ``size`` of them."""

    def __init__(self, size: int = 512) -> None:
        self._size = size
        self._pages: OrderedDict[tuple[Any, ...], Rendered] = OrderedDict()
        self._lock = threading.Lock()

    def cached(
        self,
        view: ReleaseView,
        fmt: str,
        filters: dict[str, frozenset[str]],
        page: int,
        page_size: int,
    ) -> Rendered | None:
        """The page if it was rendered before and is still held."""
        return self._get(_key(view, fmt, filters, page, page_size))

    def _get(self, key: tuple[Any, ...]) -> Rendered | None:
        with self._lock:
            hit = self._pages.get(key)
            if hit is not None:
                self._pages.move_to_end(key)
            return hit

    def render(
        self,
        view: ReleaseView,
        fmt: str,
        filters: dict[str, frozenset[str]],
        page: int,
        page_size: int,
    ) -> Rendered:
        """The page's bytes, a strong ETag and the pager; computed once per page of a release."""
        key = _key(view, fmt, filters, page, page_size)
        hit = self._get(key)
        if hit is not None:
            return hit
        selected = formats.select(view.cells, filters)
        total = len(selected)
        pager = {
            "page": page,
            "page_size": page_size,
            "total": total,
            "page_count": max(1, -(-total // page_size)),
        }
        chunk = selected[(page - 1) * page_size : page * page_size]
        if fmt == "json":
            document = {
                **formats.to_json(view.summary(), view.dimensions, chunk, pager),
                "provenance": view.provenance,
            }
            body = json.dumps(document, separators=(",", ":")).encode()
        elif fmt == "csv":
            body = formats.to_csv(view.dimensions, chunk).encode()
        else:
            body = formats.to_sdmx_csv(
                view.indicator_id, view.indicator_version, view.unit, view.dimensions, chunk
            ).encode()
        etag = '"' + hashlib.sha256(repr(key).encode()).hexdigest()[:32] + '"'
        rendered = (body, etag, pager)
        with self._lock:
            self._pages[key] = rendered
            while len(self._pages) > self._size:
                self._pages.popitem(last=False)
        return rendered
