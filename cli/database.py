"""The database side of commands that run on the server: one unit of work per command."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.orm import Session


@contextmanager
def unit_of_work() -> Iterator[Session]:
    """A session on the configured database: committed if the command succeeds, else rolled back."""
    from core.db import make_engine, make_session_factory
    from core.settings import get_settings

    engine = make_engine(get_settings().database_url)
    try:
        with make_session_factory(engine)() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
    finally:
        engine.dispose()


def command_context() -> Any:
    """The request context of a command: a fresh id, now, and no principal (the operator)."""
    from core.clock import utcnow
    from core.context import RequestContext
    from core.ids import new_id

    return RequestContext(new_id("cli"), utcnow(), None)
