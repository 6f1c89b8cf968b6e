"""The database side of commands that run on the server: one unit of work per command."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session


def open_engine() -> Engine:
    """An engine on the configured database, with every model registered.

    A command runs in a fresh interpreter that has imported only what it needed so far: the
    mapper of one model may name another by a foreign key or relationship that nothing has
    imported yet. The model registry imports them all, so every command sees the whole schema.
    """
    import migrations.schema  # noqa: F401  (registers every model)
    from core.db import make_engine
    from core.settings import get_settings

    return make_engine(get_settings().database_url)


@contextmanager
def unit_of_work() -> Iterator[Session]:
    """A session on the configured database: committed if the command succeeds, else rolled back."""
    from core.db import make_session_factory

    engine = open_engine()
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
