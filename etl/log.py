"""Logging for humans (plain) and schedulers (JSON lines), with secrets scrubbed from every record."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from etl.secrets import scrub


class ScrubbingFormatter(logging.Formatter):
    """Formats, then removes any registered secret from the final text."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and exception text)."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        if record.exc_info:
            payload["exception"] = scrub(self.formatException(record.exc_info))
        # Scrubbed before encoding too: JSON escapes a secret's quotes and backslashes, and the
        # escaped form would not be recognised afterwards.
        return scrub(json.dumps(payload, ensure_ascii=False, default=str))


def setup_logging(verbosity: int = 0, fmt: str = "plain") -> None:
    """`verbosity`: -1 quiet (warnings), 0 info, 1+ debug."""
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            ScrubbingFormatter("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%dT%H:%M:%S")
        )
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("etl").setLevel(level)
    # Third-party debug logs can echo request headers; keep them at warning even with -v.
    for noisy in ("urllib3", "requests", "sqlalchemy", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
