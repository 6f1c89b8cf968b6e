"""Records of the same person submitted by different partners carry the same linkage token."""

from __future__ import annotations

import hashlib

from records import service
from records.models import Submission
from tests.conftest import MASTER


def frame(session, receipt):
    return service.load_frame(session, MASTER, [session.get(Submission, receipt.submission_id)])


def test_same_person_from_two_partners_links(session, submit_file):
    kinder = submit_file(
        b"student_id,school_year,neighborhood,race_ethnicity,ready,assessment_score\n"
        b"LK00000001,2025-26,Ashland,Asian,true,80\n"
        b"LK00000002,2025-26,Bayview,White,false,40\n"
    )
    prek = submit_file(
        b"child_id,school_year,neighborhood,program_type,days_attended\n"
        b"LK00000001,2024-25,Ashland,Head Start,150\n"
        b"LK00000003,2024-25,Ashland,Head Start,120\n",
        dataset="prek_enrollment",
        as_="elnet-enrollment",
    )
    k = frame(session, kinder)["student_id"].to_list()
    p = frame(session, prek)["child_id"].to_list()
    assert k[0] == p[0]  # the same child, from the district and from the early-learning network
    assert len({k[0], k[1], p[1]}) == 3
    # A token is keyed: not the plain hash of the identifier, normalized or not.
    assert k[0] not in {hashlib.sha256(v).digest() for v in (b"LK00000001", b"lk00000001")}
