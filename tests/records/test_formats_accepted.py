"""Partners send what they have: CSV delimited by ';' or tab (told from the header), and .xlsx
and .ods spreadsheets, read into the same records as the comma-delimited CSV; and what cannot be
read (an ambiguous header, a damaged workbook, a zip bomb) is refused with nothing stored."""

from __future__ import annotations

import datetime
import io
import zipfile

import polars as pl
import pytest
from sqlalchemy import func, select

from demo.generator import generate
from records import service
from records.models import Submission
from tests.conftest import MASTER
from tests.records.test_submissions_api import URL, problem, scratch_entries

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
ODS = "application/vnd.oasis.opendocument.spreadsheet"
PERIOD = "2024-25"
ROWS = 300


@pytest.fixture(scope="module")
def readiness() -> pl.DataFrame:
    """Some of the demo's kindergarten readiness records of one school year."""
    frame = generate().kindergarten_readiness
    return frame.filter(pl.col("school_year") == PERIOD).head(ROWS)


def as_csv(frame: pl.DataFrame, delimiter: str = ",") -> bytes:
    return frame.write_csv(separator=delimiter).encode()


def as_xlsx(frame: pl.DataFrame, sheets: tuple[str, ...] = ("Records",)) -> bytes:
    import openpyxl

    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    for name in sheets:
        sheet = workbook.create_sheet(name)
        sheet.append(frame.columns)
        for row in frame.iter_rows():
            sheet.append(list(row))
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def as_ods(frame: pl.DataFrame) -> bytes:
    from odf.opendocument import OpenDocumentSpreadsheet
    from odf.table import Table, TableCell, TableRow
    from odf.text import P

    document = OpenDocumentSpreadsheet()
    table = Table(name="Records")

    def cell(value: object) -> TableCell:
        if isinstance(value, bool):
            c = TableCell(valuetype="boolean", booleanvalue="true" if value else "false")
        elif isinstance(value, int | float):
            c = TableCell(valuetype="float", value=value)
        else:
            c = TableCell(valuetype="string")
        if value is not None:
            c.addElement(P(text=str(value)))
        return c

    for row in [tuple(frame.columns), *frame.iter_rows()]:
        tr = TableRow()
        for value in row:
            tr.addElement(cell(value))
        table.addElement(tr)
    document.spreadsheet.addElement(table)
    out = io.BytesIO()
    document.write(out)
    return out.getvalue()


def post(api, body: bytes, ctype: str, query: str = "", **headers: str):
    return api.post(
        f"{URL}?period={PERIOD}{query}",
        as_="district-sis",
        content=body,
        headers={"Content-Type": ctype, **headers},
    )


def stored(session, submission_id: str) -> pl.DataFrame:
    row = session.get(Submission, submission_id)
    frame = service.load_frame(session, MASTER, [row])
    assert frame is not None
    return frame.sort("student_id")


def submissions(session) -> int:
    return session.scalar(select(func.count()).select_from(Submission))


def test_semicolon_and_tab_files_are_read_as_the_comma_file(api, session, readiness):
    comma = post(api, as_csv(readiness), "text/csv")
    assert comma.status_code == 201, comma.text
    assert comma.json()["csv"] == {"delimiter": ","}
    expected = stored(session, comma.json()["id"])
    assert expected.height == ROWS
    for delimiter in (";", "\t"):
        r = post(api, as_csv(readiness, delimiter), "text/csv; charset=utf-8")
        assert r.status_code == 201, r.text
        assert r.json()["csv"] == {"delimiter": delimiter}
        assert r.json()["row_count"] == ROWS
        assert stored(session, r.json()["id"]).equals(expected)
        # The receipt read later states it too.
        again = api.get(f"/v1/submissions/{r.json()['id']}", as_="district-sis")
        assert again.json()["csv"] == {"delimiter": delimiter}


def test_an_ambiguous_header_is_refused_with_how_to_resolve_it(api, session, settings):
    before = submissions(session)
    # Split by ',' it names student_id; split by ';' it names assessment_score.
    body = b"student_id,school_year;neighborhood;assessment_score\nQA00000001,2024-25;Ashland;5\n"
    r = post(api, body, "text/csv")
    detail = problem(r, 400, "ambiguous-delimiter")["detail"]
    assert "commas" in detail and "QA00000001" not in r.text
    assert submissions(session) == before and scratch_entries(settings) == []


def test_xlsx_and_ods_are_read_as_the_csv(api, session, readiness):
    comma = post(api, as_csv(readiness), "text/csv")
    assert comma.status_code == 201, comma.text
    expected = stored(session, comma.json()["id"])
    for body, ctype in ((as_xlsx(readiness), XLSX), (as_ods(readiness), ODS)):
        r = post(api, body, ctype)
        assert r.status_code == 201, r.text
        assert r.json()["row_count"] == ROWS and "csv" not in r.json()
        got = stored(session, r.json()["id"])
        # Integers stay integers, booleans booleans: the same typed records.
        assert got.schema == expected.schema
        assert got.equals(expected)


def test_a_named_sheet_is_read_and_an_unknown_one_refused(api, session, readiness):
    other = readiness.head(7)
    workbook = as_xlsx(readiness, sheets=("Notes", "Records"))
    # The first sheet is read by default: here the notes, which are records too.
    first = post(api, workbook, XLSX)
    assert first.status_code == 201, first.text
    assert first.json()["row_count"] == ROWS
    named = post(api, as_xlsx(other, sheets=("Cover", "Kindergarten")), XLSX, "&sheet=Kindergarten")
    assert named.status_code == 201, named.text
    assert named.json()["row_count"] == 7
    before = submissions(session)
    missing = post(api, workbook, XLSX, "&sheet=Nope")
    problem(missing, 400, "malformed-body")
    assert submissions(session) == before
    problem(post(api, as_csv(other), "text/csv", "&sheet=Records"), 422, "invalid-input")


def test_typed_cells_fill_string_and_date_fields_as_text(readiness):
    from records.intake import _typed_column

    # A date cell in a string field reads as its ISO date; a whole number without ".0".
    col = _typed_column("x", [datetime.date(2025, 9, 1), 12.0, "", "a"], "string")
    assert col.to_list() == ["2025-09-01", "12", None, "a"]
    assert _typed_column("n", [3.0, None], "integer").dtype == pl.Int64
    assert _typed_column("n", [3.5], "integer").to_list() == ["3.5"]  # refused as in a CSV
    assert _typed_column("d", [datetime.datetime(2025, 9, 1)], "date").dtype == pl.Date


def zip_bomb(size: int) -> bytes:
    """An .xlsx-shaped zip whose one member inflates to ``size`` bytes of zeros."""
    out = io.BytesIO()
    block = b"\0" * (1 << 20)
    with (
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive,
        archive.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as member,
    ):
        for _ in range(size >> 20):
            member.write(block)
    return out.getvalue()


def test_a_corrupt_workbook_and_a_zip_bomb_are_refused_and_nothing_is_stored(
    api, session, settings, readiness
):
    before = submissions(session)
    good = as_xlsx(readiness.head(3))
    flipped = bytearray(good)
    sheet = good.index(b"xl/worksheets/sheet1.xml") + 200  # inside the member's deflate stream
    flipped[sheet] ^= 0xFF
    damaged = (
        b"not a spreadsheet at all",
        good[: len(good) // 2],
        good[:30] + b"\0" * 200,
        bytes(flipped),
    )
    for body in damaged:
        r = post(api, body, XLSX)
        problem(r, 400, "malformed-body")
    # A sound zip that is not a workbook.
    plain = io.BytesIO()
    with zipfile.ZipFile(plain, "w") as archive:
        archive.writestr("hello.txt", "hello")
    problem(post(api, plain.getvalue(), XLSX), 400, "malformed-body")
    # Too many columns and an unlisted one: refused from the header row, as in a CSV.
    wide = readiness.head(2).with_columns(*[pl.lit(1).alias(f"extra_{i}") for i in range(5)])
    problem(post(api, as_xlsx(wide), XLSX), 422, "too-many-columns")
    unlisted = readiness.head(2).drop("assessment_score").with_columns(pl.lit("x").alias("home"))
    problem(post(api, as_xlsx(unlisted), XLSX), 403, "policy-denied")
    r = post(api, zip_bomb(64 << 20), XLSX)
    problem(r, 413, "payload-too-large")
    r = post(api, zip_bomb(64 << 20), ODS)
    problem(r, 413, "payload-too-large")
    session.expire_all()
    assert submissions(session) == before
    assert scratch_entries(settings) == []


def test_a_spreadsheet_resent_with_its_idempotency_key_is_stored_once(api, session, readiness):
    body = as_xlsx(readiness.head(11))
    first = post(api, body, XLSX, **{"Idempotency-Key": "readiness-xlsx-1"})
    assert first.status_code == 201, first.text
    before = submissions(session)
    again = post(api, body, XLSX, **{"Idempotency-Key": "readiness-xlsx-1"})
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert submissions(session) == before


def test_a_gzipped_spreadsheet_is_read_too(api, readiness):
    import gzip

    r = post(api, gzip.compress(as_ods(readiness.head(5))), ODS, **{"Content-Encoding": "gzip"})
    assert r.status_code == 201, r.text
    assert r.json()["row_count"] == 5
