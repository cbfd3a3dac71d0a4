"""Structured logging: JSON lines (or console in development) with contextvars bound per request.

The correlation id and tenant id are bound through `structlog.contextvars`, so every log line
emitted while handling an HTTP request, relaying an event or consuming one carries them.
"""

import logging
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

import msgspec
import structlog

_SECRET_KEYS = frozenset({"password", "api_key", "secret", "token", "authorization", "key"})


def _redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace the value of any field whose name says it holds a secret."""
    for key in list(event_dict):
        if key.lower() in _SECRET_KEYS:
            event_dict[key] = "***"
    return event_dict


def _json_dumps(event_dict: Any, **_: Any) -> str:
    return _ENCODE(event_dict).decode()


_ENCODE = msgspec.json.Encoder(enc_hook=str).encode
"""JSON lines by msgspec: several times faster than the standard library's json, and any value
it cannot encode (an exception, a path) is written as its `str`."""


def configure_logging(*, level: str = "INFO", json: bool = True, cache: bool = False) -> None:
    """Configure structlog and the standard library logger once per process.

    `cache` lets each logger keep its configuration from its first use (structlog's
    `cache_logger_on_first_use`): a long-lived server saves a logger build on every line, but
    a later `configure` (such as `structlog.testing.capture_logs`) no longer reaches a logger
    already used, so only `metachat run` asks for it.
    """
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_json_dumps)
        if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=cache,
    )
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format="%(message)s")
    for noisy in ("aiormq", "aio_pika", "faststream", "httpx", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))


@contextmanager
def bound(**values: Any) -> Iterator[None]:
    """Bind values (correlation_id, tenant_id, ...) to every log line inside the block."""
    tokens = structlog.contextvars.bind_contextvars(**values)
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)


def current(name: str) -> Any:
    """Return a value bound with `bound`, or None."""
    return structlog.contextvars.get_contextvars().get(name)
