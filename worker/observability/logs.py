"""Logging setup: human-readable lines by default, one JSON object per line for log shippers.

``MODELREG_LOG_FORMAT=json`` turns JSON on. Fields passed with ``extra=`` (``eventId``,
``modelId``, ``type``, ``outcome``, ...) become top-level keys of the JSON object, so the
per-event debug lines can be filtered by model or event id without parsing the message.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Final, TextIO

from worker.settings import Settings

TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ...extra, "exception"?}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(settings: Settings, stream: TextIO | None = None) -> None:
    """Replace the root handlers with one in the configured format and level."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    # aiokafka logs every coordinator hiccup at INFO/WARNING; ours already says what matters.
    if settings.log_level != "DEBUG":
        logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
        # The pool warns on every reconnect attempt during an outage; the worker's own outage
        # log already says it once when it starts and once when it ends.
        logging.getLogger("psycopg.pool").setLevel(max(logging.ERROR, root.level))


def log_batch(logger: logging.Logger, report: Any, records: int, seconds: float) -> None:
    """One debug line per event (ids, type, outcome as fields) and one info line of counts.

    ``report`` is a ``worker.persistence.registry.BatchReport``; typed loosely to keep this
    module free of the persistence layer.
    """
    if logger.isEnabledFor(logging.DEBUG):
        for result in report.results:
            event_id = None if result.event_id is None else str(result.event_id)
            logger.debug(
                "event %s model %s type %s: %s",
                event_id,
                result.model_id,
                result.event_type,
                result.outcome,
                extra={
                    "eventId": event_id,
                    "modelId": result.model_id,
                    "type": result.event_type,
                    "outcome": str(result.outcome),
                    "topic": result.topic,
                },
            )
    if logger.isEnabledFor(logging.INFO):
        counts: dict[str, int] = {}
        for result in report.results:
            counts[str(result.outcome)] = counts.get(str(result.outcome), 0) + 1
        summary = " ".join(f"{outcome}={n}" for outcome, n in sorted(counts.items()))
        logger.info(
            "applied a batch of %d records in %.0f ms: %s",
            records,
            seconds * 1000,
            summary or "nothing",
            extra={"records": records, "outcomes": counts},
        )
