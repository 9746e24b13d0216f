"""Structured event logs: one line per event, human-readable or JSON (TUS_LOG_FORMAT=json).

`event("created", upload_id=..., size=...)` logs `created upload_id=tus-… size=5` in text
mode; in JSON mode the formatter writes `{"time": …, "level": "INFO", "logger": …,
"event": "created", "upload_id": …, "size": 5}` with `json.dumps`, so a field holding quotes or
newlines stays one valid line. Other log records (warnings, tracebacks) go through the same
formatter, so a JSON log is JSON throughout.
"""
from __future__ import annotations

import json
import logging
import time

log = logging.getLogger("tus_server.events")


def event(name: str, **fields) -> None:
    text = " ".join(f"{key}={value!r}" if isinstance(value, str) and " " in value
                    else f"{key}={value}" for key, value in fields.items())
    log.info("%s %s", name, text, extra={"tus_event": name, "tus_fields": fields})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
        }
        if hasattr(record, "tus_event"):
            data["event"] = record.tus_event
            data.update(record.tus_fields)
        else:
            data["message"] = record.getMessage()
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def configure(log_format: str) -> None:
    """Make the root handlers (basicConfig's or gunicorn's) write the chosen format."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if log_format == "json":
        for handler in root.handlers:
            handler.setFormatter(JsonFormatter())
