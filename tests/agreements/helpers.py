"""Shared steps of the agreement tests."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import yaml


def amend(
    api: Any,
    agreement: str,
    change: Callable[[dict[str, Any]], None],
    approvers: tuple[str, ...],
) -> int:
    """A new version of an agreement (its latest document with ``change`` applied), drafted by
    the backbone and approved by each of ``approvers`` (every party: it then governs)."""
    current = api.get(f"/v1/agreements/{agreement}", as_="backbone-manager").json()
    latest = max(v["version"] for v in current["versions"])
    shown = api.get(f"/v1/agreements/{agreement}/versions/{latest}", as_="backbone-manager")
    doc = copy.deepcopy(shown.json()["document"])
    change(doc)
    r = api.post(
        "/v1/agreements",
        as_="backbone-manager",
        content=yaml.safe_dump(doc).encode(),
        headers={"Content-Type": "application/yaml"},
    )
    assert r.status_code == 201, r.text
    version: int = r.json()["version"]
    for approver in approvers:
        draft = api.get(f"/v1/agreements/{agreement}/versions/{version}", as_=approver).json()
        r = api.post(
            f"/v1/agreements/{agreement}/approve",
            as_=approver,
            json={"version": version, "content_hash": draft["content_hash"]},
        )
        assert r.status_code == 200, r.text
    assert r.json()["status"] == "active"
    return version
