"""Decoding, limits and parsing of request bodies, below the HTTP layer."""

from __future__ import annotations

import gzip
import io
import json
import zlib

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from records import intake
from records.errors import MalformedBody, SubmissionTooLarge, UnsupportedEncoding

LIMITS = intake.IntakeLimits(max_bytes=1 << 24, max_ratio=20, max_line_bytes=4096)


def frames(body: bytes, fmt: str, coding: str = "identity", limits=LIMITS) -> pl.DataFrame:
    stream = intake.decoded(io.BytesIO(body), fmt, coding, limits)
    reader = intake.open_reader(fmt, stream, limits)
    parts = list(reader.frames())
    return pl.concat(parts, how="diagonal_relaxed") if parts else pl.DataFrame()


@pytest.mark.parametrize(
    ("header", "fmt"),
    [
        ("text/csv", "csv"),
        ("text/csv; charset=utf-8", "csv"),
        ('TEXT/CSV;charset="UTF-8"', "csv"),
        ("application/x-ndjson", "ndjson"),
        ("application/json", "json"),
    ],
)
def test_media_types(header, fmt):
    assert intake.media_format(header) == fmt


@pytest.mark.parametrize(
    "header",
    [None, "", "text/plain", "application/xml", "text/csv; charset=latin-1", "multipart/form-data"],
)
def test_refused_media_types(header):
    with pytest.raises(UnsupportedEncoding):
        intake.media_format(header)


def test_content_codings():
    assert intake.content_coding(None) == "identity"
    assert intake.content_coding("GZIP") == "gzip"
    for bad in ("br", "deflate", "gzip, br"):
        with pytest.raises(UnsupportedEncoding):
            intake.content_coding(bad)


def test_csv_basic_quoting_and_crlf():
    body = b'a,b,c\r\n1,"x, y",3\r\n4,"multi\nline ""quoted""",6\r\n\r\n7,,9\r\n'
    df = frames(body, "csv")
    assert df.columns == ["a", "b", "c"]
    assert df.to_dicts() == [
        {"a": "1", "b": "x, y", "c": "3"},
        {"a": "4", "b": 'multi\nline "quoted"', "c": "6"},
        {"a": "7", "b": "", "c": "9"},
    ]


def test_utf8_bom_is_skipped_and_never_reaches_the_header():
    df = frames(b"\xef\xbb\xbfa,b\n1,2\n", "csv")
    assert df.columns == ["a", "b"]
    assert frames(b'\xef\xbb\xbf{"a":1}\n', "ndjson").columns == ["a"]
    assert frames(b'\xef\xbb\xbf[{"a":1}]', "json").columns == ["a"]


@pytest.mark.parametrize(
    "body",
    [
        "a,b\n1,2\n".encode("utf-16"),  # with BOM
        "a,b\n1,2\n".encode("utf-16-be"),  # no BOM: NUL bytes
        "a,b\n1,2\n".encode("utf-32"),
        b"\xfe\xffa,b\n",
    ],
)
def test_utf16_and_utf32_are_refused(body):
    with pytest.raises(UnsupportedEncoding):
        frames(body, "csv")


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
def test_invalid_utf8_is_refused(fmt):
    body = {
        "csv": "a,b\n1,Grüße\n".encode("latin-1"),
        "ndjson": '{"a":"Grüße"}\n'.encode("latin-1"),
        "json": '[{"a":"Grüße"}]'.encode("latin-1"),
    }[fmt]
    with pytest.raises(UnsupportedEncoding):
        frames(body, fmt)


def test_latin1_header_is_refused():
    with pytest.raises(UnsupportedEncoding):
        frames("nämé,b\n1,2\n".encode("latin-1"), "csv")


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"a,a,b\n1,2,3\n", "repeats a column name (column 2"),
        (b"a,,b\n1,2,3\n", "empty column name (column 2)"),
        (b"\n1,2\n", "header row is missing"),
        (b"a,b\n1,2\n3\n", "1 field(s) where the header has 2"),
        (b"a,b\n1,2\n3,4,5\n", "3 field(s) where the header has 2"),
        (b'a,b\n1,"open\n2,3\n', "not closed"),
    ],
)
def test_malformed_csv(body, needle):
    with pytest.raises(MalformedBody) as err:
        frames(body, "csv")
    assert needle in err.value.detail


def test_malformed_csv_messages_never_quote_the_row():
    with pytest.raises(MalformedBody) as err:
        frames(b"a,b\n1,2\nSECRETVALUE\n", "csv")
    assert "SECRETVALUE" not in err.value.detail


def test_ragged_row_in_a_later_block_is_found(monkeypatch):
    monkeypatch.setattr(intake, "TEXT_BLOCK", 64)
    body = b"a,b\n" + b"1,2\n" * 500 + b"3\n" + b"4,5\n" * 10
    with pytest.raises(MalformedBody):
        frames(body, "csv")


@pytest.mark.parametrize("block", [7, 16, 64, 1 << 20])
def test_csv_blocks_cut_at_record_boundaries(monkeypatch, block):
    monkeypatch.setattr(intake, "TEXT_BLOCK", block)
    rows = [(str(i), f'v "{i}"\nnext, line' if i % 3 == 0 else f"plain{i}") for i in range(200)]
    text = "id,note\n" + "".join(
        f'{i},"{n.replace(chr(34), chr(34) * 2)}"\n' if '"' in n or "\n" in n else f"{i},{n}\n"
        for i, n in rows
    )
    df = frames(text.encode(), "csv", limits=intake.IntakeLimits(max_bytes=1 << 20))
    assert list(zip(df["id"], df["note"], strict=True)) == rows


def test_empty_and_header_only_bodies():
    with pytest.raises(MalformedBody, match="empty"):
        frames(b"", "csv")
    assert frames(b"a,b\n", "csv").height == 0
    assert frames(b"\n\n", "ndjson").height == 0
    assert frames(b"[]", "json").height == 0


def test_line_length_limit():
    limits = intake.IntakeLimits(max_bytes=1 << 24, max_line_bytes=100)
    frames(b"a\n" + b"x" * 100 + b"\n", "csv", limits=limits)
    with pytest.raises(MalformedBody, match="longer than 100 bytes"):
        frames(b"a\n" + b"x" * 101 + b"\n", "csv", limits=limits)
    with pytest.raises(MalformedBody, match="longer than 100 bytes"):
        frames(
            b"a\n" + (b"y" * 60 + b"\n") * 10 + b"x" * 500 + b"\n" + b"z\n", "csv", limits=limits
        )
    with pytest.raises(MalformedBody, match="longer than 100 bytes"):
        frames(b'{"a":"' + b"x" * 200 + b'"}\n', "ndjson", limits=limits)


def test_gzip_is_decoded_including_concatenated_members():
    body = gzip.compress(b"a,b\n1,2\n") + gzip.compress(b"3,4\n")
    df = frames(body, "csv", "gzip")
    assert df.to_dicts() == [{"a": "1", "b": "2"}, {"a": "3", "b": "4"}]


def gzip_bomb(head: bytes, size: int) -> bytes:
    """A gzip body that expands to ``size`` bytes, made without holding them in memory."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    out = [deflate.compress(head)]
    block = b"0\n" * (1 << 19)
    for _ in range(size // len(block)):
        out.append(deflate.compress(block))
    out.append(deflate.flush())
    return b"".join(out)


def test_gzip_bomb_stops_early():
    bomb = gzip_bomb(b"a\n", 100 << 20)
    assert len(bomb) < 200_000
    stream = intake.decoded(io.BytesIO(bomb), "csv", "gzip", LIMITS)
    with pytest.raises(SubmissionTooLarge, match="expands more than 20 times"):
        while stream.read(1 << 20):
            pass
    # It stopped within a couple of blocks of crossing the ratio, not at the end of the bomb.
    assert stream.text_bytes < 20 * stream.raw_bytes + 3 * intake.CHUNK


def test_decompressed_size_limit():
    limits = intake.IntakeLimits(max_bytes=10_000, max_ratio=1000)
    body = gzip.compress(b"a\n" + b"123456789\n" * 2000)
    with pytest.raises(SubmissionTooLarge, match="limit of 10000 bytes"):
        frames(body, "csv", "gzip", limits)


@pytest.mark.parametrize(
    "body",
    [b"not gzip at all", gzip.compress(b"a,b\n1,2\n", mtime=0)[:-6]],
    ids=["garbage", "truncated"],
)
def test_bad_or_truncated_gzip(body):
    with pytest.raises(MalformedBody):
        frames(body, "csv", "gzip")


def test_ndjson_types_and_blank_lines():
    body = b'{"a": 1, "b": "x"}\n\n{"a": 2.5, "b": null, "c": true}\n'
    df = frames(body, "ndjson")
    assert df.height == 2 and set(df.columns) == {"a", "b", "c"}


@pytest.mark.parametrize(
    "body",
    [b'{"a": {"b": 1}}\n', b'{"a": [1, 2]}\n', b"[1, 2]\n", b"not json\n", b'{"a": 1\n'],
)
def test_ndjson_refusals(body):
    with pytest.raises(MalformedBody):
        frames(body, "ndjson")


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": 1}',
        b'[{"a": 1},]',
        b'[{"a": 1} {"a": 2}]',
        b'[{"a": {"b": 1}}]',
        b'[{"a": [1]}]',
        b'[{"a": 1}] trailing',
        b'[{"a": 1}',
        b"[1, 2]",
        b'[{"a": "raw\nbreak"}]',
    ],
)
def test_json_array_refusals(body):
    with pytest.raises(MalformedBody):
        frames(body, "json")


flat_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12),
)
records_strategy = st.lists(
    st.dictionaries(st.sampled_from(["a", "b", "c"]), flat_values, min_size=1),
    min_size=1,
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(records=records_strategy, indent=st.sampled_from([None, 1]), block=st.integers(1, 64))
def test_json_array_splitter_matches_json_loads(records, indent, block):
    text = json.dumps(records, indent=indent).encode()
    splitter = intake.JsonArraySplitter(1 << 20)
    out = b""
    for i in range(0, len(text), block):
        out += splitter.feed(text[i : i + block], False)
    out += splitter.feed(b"", True)
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert lines == records


def test_body_pipe_hands_bytes_across_threads():
    import threading

    import anyio

    pipe = intake.BodyPipe(capacity=64)
    received: list[bytes] = []

    def reader() -> None:
        while chunk := pipe.read(10):
            received.append(chunk)

    async def writer() -> None:
        for i in range(100):
            await pipe.feed(f"{i:03d}".encode() * 10)
        pipe.finish()

    thread = threading.Thread(target=reader)
    thread.start()
    anyio.run(writer)
    thread.join(timeout=10)
    assert b"".join(received) == b"".join(f"{i:03d}".encode() * 10 for i in range(100))


def test_aborted_pipe_stops_the_reader():
    pipe = intake.BodyPipe()
    pipe.abort()
    with pytest.raises(intake.BodyAborted):
        pipe.read()
