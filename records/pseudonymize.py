"""Keyed pseudonymous linkage tokens for direct identifiers.

A field with role ``identifier`` never reaches storage: it is normalized and replaced by
HMAC-SHA256 under a linkage key derived from the master key with HKDF. The same person submitted
by two partners yields the same token, so records link where the agreements allow it; without the
master key a token cannot be recomputed from a guessed identifier.

Normalization, applied before hashing so that trivial differences do not break linkage:
  strings   Unicode NFKC, leading and trailing whitespace removed, inner runs of whitespace
            collapsed to one space, then case-folded (``str.casefold``).
  integers  the canonical decimal form (leading zeros and a ``+`` sign dropped).
  dates     ISO 8601 ``YYYY-MM-DD``.
"""

from __future__ import annotations

import hmac

import polars as pl

from core.keys import MasterKey
from policy.model import DatasetTerms

TOKEN_BYTES = 32


def linkage_key(master: MasterKey) -> bytes:
    return master.derive("linkage/v1")


def _normalized(series: pl.Series, ftype: str) -> pl.Series:
    if ftype == "string":
        return series.str.normalize("NFKC").str.strip_chars().str.replace_all(r"\s+", " ")
    return series.cast(pl.String)


def tokens(series: pl.Series, ftype: str, key: bytes) -> pl.Series:
    """Replace every value by its linkage token (nulls stay null)."""
    values = _normalized(series, ftype)
    digest = hmac.digest
    casefold = ftype == "string"
    out = [
        None if v is None else digest(key, (v.casefold() if casefold else v).encode(), "sha256")
        for v in values.to_list()
    ]
    return pl.Series(series.name, out, dtype=pl.Binary)


def pseudonymize(frame: pl.DataFrame, dataset: DatasetTerms, key: bytes) -> pl.DataFrame:
    """Return ``frame`` with each identifier field replaced by its linkage tokens."""
    replaced = [
        tokens(frame.get_column(f.name), f.type, key)
        for f in dataset.fields
        if f.role == "identifier" and f.name in frame.columns
    ]
    return frame.with_columns(replaced) if replaced else frame
