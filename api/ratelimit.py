"""Per-client rate limits (the ``limits`` library), answered with 429 and ``Retry-After``.

Limits are kept in memory per process by default; set ``BACKBONE_RATE_LIMIT_STORAGE`` to a shared
store such as ``redis://host:6379`` when several workers or hosts serve the API.
"""

from __future__ import annotations

import math
import time

from fastapi import Request
from limits import RateLimitItem, parse, storage, strategies

from core.errors import DomainError


class RateLimited(DomainError):
    kind = "rate-limited"
    title = "Too many requests"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"Rate limit exceeded; retry after {retry_after} second(s).",
            extra={"retry_after": retry_after},
        )


class RateLimiter:
    def __init__(self, storage_uri: str, token_limit: str, write_limit: str) -> None:
        self._limiter = strategies.SlidingWindowCounterRateLimiter(
            storage.storage_from_string(storage_uri)
        )
        self.token_limit = parse(token_limit)
        self.write_limit = parse(write_limit)

    def hit(self, item: RateLimitItem, *keys: str) -> None:
        """Count one request against ``item`` for ``keys``; raise :class:`RateLimited` if over."""
        if self._limiter.hit(item, *keys):
            return
        reset, _remaining = self._limiter.get_window_stats(item, *keys)
        raise RateLimited(max(1, math.ceil(reset - time.time())))


def token_key(request: Request, form_client_id: str | None) -> str:
    """Rate-limit the token endpoint by claimed client id (unverified), else by address."""
    if form_client_id:
        return f"client:{form_client_id[:64]}"
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("basic "):
        import base64
        import binascii

        try:
            decoded = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8", "replace")
            return f"client:{decoded.split(':', 1)[0][:64]}"
        except (binascii.Error, ValueError):
            pass
    host = request.client.host if request.client else "unknown"
    return f"addr:{host}"
