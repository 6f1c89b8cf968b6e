"""The byte form of an audit event that its Merkle leaf hashes: canonical JSON.

Keys sorted, no insignificant whitespace, UTF-8, times as RFC 3339 strings with microseconds.
An exported event line carries exactly these fields, so anyone can recompute the leaf hash.
"""

from __future__ import annotations

import json
from typing import Any

ENTRY_FIELDS = (
    "index",
    "at",
    "request_id",
    "organization",
    "client",
    "action",
    "resource_type",
    "resource_id",
    "agreements",
    "purpose",
    "decision",
    "rules",
    "reasons",
    "counts",
    "outcome",
    "detail",
)


def canonical_bytes(entry: dict[str, Any]) -> bytes:
    data = {k: entry.get(k) for k in ENTRY_FIELDS}
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
