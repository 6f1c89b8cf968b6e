"""Revision 0011 makes the results tables and takes them away again, leaving the rest."""

from __future__ import annotations

from sqlalchemy import inspect

from core.db import make_engine
from migrations.commands import downgrade, upgrade

RESULTS_TABLES = {
    "results",
    "result_indicators",
    "stories",
    "story_versions",
    "result_strategies",
    "result_partners",
    "result_actions",
}


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_0011_upgrades_and_downgrades_cleanly(fresh_databases):
    url = fresh_databases.url()
    upgrade(url, "0010")
    before = _tables(url)
    assert not before & RESULTS_TABLES
    upgrade(url, "0011")
    assert _tables(url) == before | RESULTS_TABLES
    downgrade(url, "0010")
    assert _tables(url) == before
    upgrade(url, "0011")
    assert _tables(url) >= RESULTS_TABLES
