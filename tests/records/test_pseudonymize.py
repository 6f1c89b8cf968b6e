"""Linkage tokens: exactly HMAC-SHA256, the documented normalization, and the fast path."""

from __future__ import annotations

import hmac
import os
from datetime import date

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from core.keys import MasterKey
from policy.model import DatasetTerms, FieldTerms
from records.pseudonymize import Tokenizer, linkage_key, normalized

KEY = os.urandom(32)


def ref(text: str) -> bytes:
    return hmac.digest(KEY, text.encode(), "sha256")


def test_tokens_are_hmac_sha256():
    tok = Tokenizer(KEY)
    for message in (b"", b"a", b"AB12345678", "é".encode() * 40, b"x" * 1000):
        assert tok.digest(message) == hmac.digest(KEY, message, "sha256")
    long_key = os.urandom(100)
    assert Tokenizer(long_key).digest(b"m") == hmac.digest(long_key, b"m", "sha256")


def test_linkage_key_is_derived_and_stable():
    master = MasterKey(bytes(range(32)))
    assert linkage_key(master) == linkage_key(MasterKey(bytes(range(32))))
    assert linkage_key(master) != linkage_key(MasterKey(bytes(32)))
    assert linkage_key(master) != master.raw


def test_string_normalization_rules():
    tok = Tokenizer(KEY)
    variants = [
        "AB 12",
        " ab 12 ",
        "Ab\u00a012",
        "AB  12",
        "ab\t12",
        "\uff21\uff22 12",
    ]  # NBSP, fullwidth
    out = tok.tokens(pl.Series(variants), "string").to_list()
    assert set(out) == {ref("ab 12")}
    assert tok.tokens(pl.Series(["Straße"]), "string").to_list() == [ref("strasse")]
    assert tok.tokens(pl.Series(["STRASSE"]), "string").to_list() == [ref("strasse")]
    assert (
        tok.tokens(pl.Series(["ΣΊΣΥΦΟΣ"]), "string").to_list()
        == tok.tokens(pl.Series(["σίσυφος"]), "string").to_list()
    )
    assert tok.tokens(pl.Series([None, "a"]), "string").to_list() == [None, ref("a")]


def test_typed_normalization_rules():
    tok = Tokenizer(KEY)
    assert tok.tokens(pl.Series([7, 42], dtype=pl.Int64), "integer").to_list() == [
        ref("7"),
        ref("42"),
    ]
    assert tok.tokens(pl.Series([date(2019, 3, 4)]), "date").to_list() == [ref("2019-03-04")]
    assert tok.tokens(pl.Series([7.5]), "number").to_list() == [ref("7.5")]
    assert tok.tokens(pl.Series([True]), "boolean").to_list() == [ref("true")]
    # The same identifier typed as text by one partner and as a number by another links.
    assert tok.tokens(pl.Series(["42"]), "string").to_list() == [ref("42")]


def test_pseudonymize_replaces_only_identifiers():
    ds = DatasetTerms(
        "t", "p", frozenset(),
        (FieldTerms("pid", "string", "identifier"), FieldTerms("zone", "string", "dimension")),
    )  # fmt: skip
    frame = pl.DataFrame({"pid": ["AB1", "ab1"], "zone": ["North", "North"]})
    out = Tokenizer(KEY).pseudonymize(frame, ds)
    assert out["zone"].to_list() == ["North", "North"]
    assert out["pid"].dtype == pl.Binary
    assert out["pid"].to_list() == [ref("ab1"), ref("ab1")]


text = st.text(
    alphabet=st.one_of(
        st.sampled_from(list("ABCxyz019 \t\n\u00a0\u2003ßİ\u0131ΣςéE\u0301\ufb01\uff21")),
        st.characters(blacklist_categories=("Cs",)),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), text), min_size=1, max_size=10))
def test_fast_and_general_paths_agree(values):
    tok = Tokenizer(KEY)
    series = pl.Series(values, dtype=pl.String)
    fast = tok.tokens(series, "string").to_list()
    general = tok.digest_all(normalized(series, "string").cast(pl.Binary).to_list())
    assert fast == general
