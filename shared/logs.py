"""JSON logs that carry the correlation id of the request or event being handled, and never
the secrets or personal data of a request or event.

Nothing logs bodies or headers, and the engines hide statement parameters; as a last line,
every line is scrubbed of what would still carry them: the input values pydantic quotes in
its validation errors (an event's contact, say), bearer tokens and e-mail addresses.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime

correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)


@contextlib.contextmanager
def correlation_scope(value: str) -> Iterator[None]:
    token = correlation_id.set(value)
    try:
        yield
    finally:
        correlation_id.reset(token)


HIDDEN = "<hidden>"
_SECRETS = (
    # pydantic: "... [type=string_too_short, input_value={'email': ...}, input_type=dict]"
    (re.compile(r"input_value=.*?, input_type=", re.DOTALL), f"input_value={HIDDEN}, input_type="),
    (re.compile(r"(?i)bearer\s+[\w.~+/=-]+"), f"Bearer {HIDDEN}"),
    (re.compile(r"eyJ[\w-]*\.[\w-]+\.[\w-]*"), HIDDEN),  # a JWT anywhere else
    # an e-mail address, as SMTP errors quote refused recipients
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "<email>"),
)


def redact(text: str) -> str:
    """`text` without the values that may hold secrets or personal data."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "correlation_id": correlation_id.get(),
        }
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


def configure_logging(service: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # httpx logs every request's URL at INFO: a webhook's URL may itself be its secret.
    logging.getLogger("httpx").setLevel(logging.WARNING)
