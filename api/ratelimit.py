"""Rate limits (the ``limits`` library), answered with 429 and ``Retry-After``.

Limits are kept in memory per process by default; set ``BACKBONE_RATE_LIMIT_STORAGE`` to a shared
store such as ``redis://host:6379`` when several workers or hosts serve the API.

The OAuth endpoints are limited so that no stranger can lock a client out (client ids are not
secret):

* failed client authentications count per source address, which is refused at once (before any
  secret is checked) once over the failure limit;
* they count per claimed client id too, in a bucket of their own: over it, a *failed*
  authentication is answered 429 rather than 401, but a request that authenticates is never
  refused by it;
* requests of an authenticated client count against that client's own allowance
  (``BACKBONE_TOKEN_RATE_LIMIT``), which only its own authenticated requests spend.

Reads without a token (releases published to the public) count per source address
(``BACKBONE_PUBLIC_READ_RATE_LIMIT``).
"""

from __future__ import annotations

import base64
import binascii
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
    def __init__(
        self,
        storage_uri: str,
        token_limit: str,
        write_limit: str,
        failure_limit: str = "20/minute",
        public_read_limit: str = "120/minute",
    ) -> None:
        self._limiter = strategies.SlidingWindowCounterRateLimiter(
            storage.storage_from_string(storage_uri)
        )
        self.token_limit = parse(token_limit)
        self.write_limit = parse(write_limit)
        self.failure_limit = parse(failure_limit)
        self.public_read_limit = parse(public_read_limit)

    def _retry_after(self, item: RateLimitItem, *keys: str) -> int:
        reset, _remaining = self._limiter.get_window_stats(item, *keys)
        return max(1, math.ceil(reset - time.time()))

    def hit(self, item: RateLimitItem, *keys: str) -> None:
        """Count one request against ``item`` for ``keys``; raise :class:`RateLimited` if over."""
        retry = self.take(item, *keys)
        if retry is not None:
            raise RateLimited(retry)

    def take(self, item: RateLimitItem, *keys: str) -> int | None:
        """Count one request; None if allowed, else the seconds to wait."""
        if self._limiter.hit(item, *keys):
            return None
        return self._retry_after(item, *keys)

    def exhausted(self, item: RateLimitItem, *keys: str) -> int | None:
        """Without counting: None if one more request would be allowed, else the seconds to wait."""
        if self._limiter.test(item, *keys):
            return None
        return self._retry_after(item, *keys)


def source_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def claimed_client_id(request: Request, form_client_id: str | None) -> str | None:
    """The client id a request claims (unverified): the form's, else HTTP Basic's."""
    if form_client_id:
        return form_client_id[:64]
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            return None
        return decoded.split(":", 1)[0][:64] or None
    return None
