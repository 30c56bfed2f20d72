"""Logging configuration, applied once at start-up by the entry point."""

from __future__ import annotations

import json
import logging
import logging.config
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object a line, with the fields of the record that matter."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record as a JSON line."""
        entry: dict[str, Any] = {
            "at": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def logging_config(level: str = "INFO", log_format: str = "text") -> dict[str, Any]:
    """Return a dictConfig for the root logger at level, as text or JSON."""
    formatter: dict[str, Any]
    if log_format == "json":
        formatter = {"()": JsonFormatter}
    else:
        formatter = {"format": TEXT_FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        # The Kafka clients are chatty at info level about every connection.
        "loggers": {
            "kafka": {"level": "WARNING"},
            "aiokafka": {"level": "WARNING"},
        },
    }


def configure_logging(level: str = "INFO", log_format: str = "text") -> None:
    """Configure the root logger; call once, from the entry point."""
    logging.config.dictConfig(logging_config(level, log_format))
