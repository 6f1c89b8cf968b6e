"""The export line formats and the signed-note checkpoint format, without a database."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import canonical
from audit.merkle import leaf_hash
from audit.note import (
    LogSigner,
    NoteError,
    VerifierKey,
    key_id,
    open_checkpoint,
    origin_for,
    read_checkpoint,
)

TRICKY = [
    "plain",
    '=HYPERLINK("http://evil")',
    "+1",
    "-1",
    "@SUM(A1)",
    "\tstarts with a tab",
    "'already quoted",
    "''",
    'comma, "quotes" and\nnewline\r\n',
    "naïve café ✓ 日本語 \u2028",
    "back\\slash",
]


def _entry(i: int, text: str | None) -> dict:
    return {
        "index": i,
        "at": "2026-05-01T12:00:00.000001+00:00",
        "request_id": text,
        "organization": "district",
        "client": "district-sis",
        "action": "submission.create",
        "resource_type": text,
        "resource_id": None,
        "agreements": [{"agreement": "a", "version": 1}],
        "purpose": None,
        "decision": "deny",
        "rules": [],
        "reasons": [{"expected": ["x", text], "actual": 1.5, "z": None}],
        "counts": {"rows": 3, "ratio": 0.25},
        "outcome": "denied",
        "detail": text,
    }


def test_canonical_bytes_are_sorted_compact_utf8_and_refuse_nan():
    data = canonical.canonical_bytes({"index": 1, "action": "é"})
    assert data.startswith(b'{"action":"\xc3\xa9","agreements":null,"at":null')
    assert b" " not in data
    assert json.loads(data)["index"] == 1
    with pytest.raises(ValueError):
        canonical.canonical_bytes({"counts": {"x": float("nan")}})


@pytest.mark.parametrize("text", [*TRICKY, None])
def test_csv_rows_round_trip_exactly(text):
    entry = _entry(7, text)
    leaf = leaf_hash(canonical.canonical_bytes(entry))
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(canonical.csv_row(entry, leaf))
    (row,) = list(csv.reader(io.StringIO(buffer.getvalue())))
    # No cell starts with a character a spreadsheet would run as a formula.
    assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row)
    parsed, index, stated = canonical.parse_csv_row(row)
    assert parsed == entry and index == 7 and stated == leaf
    fast, stated = canonical.csv_canonical(row)
    assert fast == canonical.canonical_bytes(entry) and stated == leaf


def test_withheld_rows_and_lines_carry_only_index_and_leaf():
    leaf = leaf_hash(b"x")
    row = canonical.csv_withheld_row(12, leaf)
    assert canonical.parse_csv_row(row) == (None, 12, leaf)
    assert canonical.csv_canonical(row) == (None, leaf)
    line = canonical.ndjson_withheld(12, leaf)
    assert json.loads(line) == {"index": 12, "leaf_hash": canonical.b64(leaf)}
    assert canonical.split_ndjson_line(line) == (None, leaf)
    assert canonical.withheld_index(line) == 12


def test_bad_csv_rows_are_refused():
    leaf = canonical.b64(leaf_hash(b"x"))
    good = canonical.csv_row(_entry(1, "x"), leaf_hash(b"x"))
    for bad in (
        good[:-1],
        ["x", *good[1:]],
        ["01", *good[1:]],
        [*good[:-1], "not base64!"],
        [good[0], "2026", *([""] * 14), leaf],  # a withheld row with content
    ):
        with pytest.raises(ValueError):
            canonical.parse_csv_row(bad)
    bad_json = list(good)
    bad_json[canonical.ENTRY_FIELDS.index("counts")] = "{not json"
    with pytest.raises(ValueError):
        canonical.parse_csv_row(bad_json)


@pytest.mark.parametrize("text", [*TRICKY, None])
def test_ndjson_lines_slice_back_to_the_canonical_bytes(text):
    data = canonical.canonical_bytes(_entry(3, text))
    leaf = leaf_hash(data)
    line = canonical.ndjson_line(data, leaf)
    assert line.endswith(b"\n") and line.count(b"\n") == 1  # newlines inside strings are escaped
    assert json.loads(line)["leaf_hash"] == canonical.b64(leaf)
    assert canonical.split_ndjson_line(line) == (data, leaf)


def test_bad_ndjson_lines_are_refused():
    data = canonical.canonical_bytes(_entry(3, "x"))
    line = canonical.ndjson_line(data, leaf_hash(data))
    for bad in (
        b"",
        b"{}",
        line[:-5],
        line.replace(b'"leaf_hash"', b'"leaf_hash_"'),
        b'{"index":x' + line[-62:],
    ):
        with pytest.raises(ValueError):
            canonical.split_ndjson_line(bad)
    with pytest.raises(ValueError):
        canonical.unb64("AAAA", 32)


def _signer(origin: str = "log.example/audit") -> LogSigner:
    return LogSigner(Ed25519PrivateKey.generate(), origin)


def test_checkpoints_are_c2sp_signed_notes():
    signer = _signer()
    when = datetime(2026, 5, 1, 12, 30, tzinfo=UTC)
    note, signature = signer.sign(42, b"\x01" * 32, when)
    text, _, sig_line = note.partition("\n\n")
    assert text.split("\n") == [
        "log.example/audit",
        "42",
        canonical.b64(b"\x01" * 32),
        "time 2026-05-01T12:30:00.000000+00:00",
    ]
    assert sig_line.startswith("\u2014 log.example/audit ") and sig_line.endswith("\n")
    blob = canonical.unb64(sig_line.split(" ")[-1].strip(), None)
    assert blob[:4] == key_id("log.example/audit", signer.verifier.public) and blob[4:] == signature
    cp = open_checkpoint(note, signer.verifier)
    assert (cp.origin, cp.size, cp.root, cp.time) == ("log.example/audit", 42, b"\x01" * 32, when)
    # Another signer's line (a witness, say) is ignored; ours still decides.
    witness, _ = _signer("witness.example").sign(42, b"\x01" * 32, when)
    cosigned = note + witness.partition("\n\n")[2]
    assert open_checkpoint(cosigned, signer.verifier).size == 42
    assert read_checkpoint(json.dumps({"note": note}), signer.verifier).size == 42
    with pytest.raises(NoteError):
        read_checkpoint("{}", signer.verifier)


def test_verifier_keys_parse_from_vkey_pem_and_json_and_refuse_garbage():
    signer = _signer()
    key = signer.verifier
    assert VerifierKey.parse(key.vkey()) == key
    assert VerifierKey.parse(key.pem()).public == key.public
    assert VerifierKey.parse(json.dumps({"vkey": key.vkey()})) == key
    name, kid, raw = key.vkey().split("+", 2)
    for bad in (
        "nonsense",
        f"{name}+{'00' * 4}+{raw}",  # wrong key id
        f"{name}+{kid}+AAAA",
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
        "{}",
        "{not json",
    ):
        with pytest.raises(NoteError):
            VerifierKey.parse(bad)
    with pytest.raises(NoteError):
        VerifierKey(b"short")
    with pytest.raises(NoteError):
        LogSigner(Ed25519PrivateKey.generate(), "has space")
    with pytest.raises(NoteError):
        VerifierKey(key.public).vkey()  # a PEM key has no name


def test_a_vkey_whose_base64_contains_plus_signs_parses():
    for seed in range(256):
        signer = LogSigner(
            Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32), "log.example/audit"
        )
        if signer.verifier.vkey().count("+") > 2:
            break
    else:  # pragma: no cover - 256 keys without a '+' in 44 base64 characters
        raise AssertionError("no such key found")
    assert VerifierKey.parse(signer.verifier.vkey()) == signer.verifier


def test_malformed_checkpoint_bodies_are_refused():
    signer = _signer()
    note, _ = signer.sign(5, b"\x02" * 32, datetime(2026, 5, 1, tzinfo=UTC))
    for bad in (
        note.replace("\n5\n", "\n05\n"),
        note.replace("\n5\n", "\n-5\n"),
        note.replace(canonical.b64(b"\x02" * 32), "short"),
        note.replace("time 2026-05-01", "time yesterday"),
        note.replace("\n\n", "\n"),
        note.replace("\u2014 ", "\u2014"),
    ):
        with pytest.raises(NoteError):
            open_checkpoint(bad, signer.verifier)


def test_the_origin_comes_from_the_issuer():
    assert origin_for("http://127.0.0.1:8000") == "127.0.0.1:8000/audit"
    assert origin_for("https://backbone.example.org/api/") == "backbone.example.org/api/audit"
