"""JSON logs carrying the request id. Nothing here ever formats record values or tokens."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = request_id_var.get()
        if rid:
            data["request_id"] = rid
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            data.update(extra)
        if record.exc_info and record.exc_info[0] is not None:
            # The exception type and location only: messages of some exceptions quote data.
            data["exception"] = record.exc_info[0].__name__
        return json.dumps(data, default=str)


def configure(level: str = "INFO", json_logs: bool = True) -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    if json_logs:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root.handlers = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    # OpenDP logs a notice at every large-epsilon plan; it carries no data but floods the log.
    logging.getLogger("opendp.context").setLevel(logging.ERROR)
    # The access log is ours (one JSON line per request, with the request id).
    logging.getLogger("uvicorn.access").disabled = True
