"""Log lines for the command line: ``--log-format text`` (the default) or ``json``, one JSON
object per line on standard error, with the fields the library gives every record about a
server (``server_id``, ``request_id``, ``phase``, ``microversion``)."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

from .._redact import scrub as redact
from .._telemetry import LOG_FIELDS

__all__ = ["JsonFormatter", "formatter"]


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and the server's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            # Scrubbed once more here: a record from a logger the library does not filter
            # (a handler of the application's) must not carry a secret into the line.
            "message": redact(record.getMessage()),
        }
        for field in LOG_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = record.exc_info[0].__name__
        return json.dumps(entry, default=str)


def formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    return logging.Formatter("%(levelname)s %(name)s: %(message)s")
