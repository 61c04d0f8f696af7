"""structlog setup: console (TTY) or JSON lines on stdout, plus a daily-rotated JSON file in log_dir.

Application logs never go to the syslog destinations. Known secrets are scrubbed from every line.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import structlog

REDACTED = "***"


class _Redactor:
    """A structlog processor that replaces known secret values anywhere in the event dict."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= 4 and secret not in self._secrets:
            self._secrets.append(secret)
            self._secrets.sort(key=len, reverse=True)

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            for s in self._secrets:
                if s in value:
                    value = value.replace(s, REDACTED)
            return value
        if isinstance(value, dict):
            return {k: self._scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self._scrub(v) for v in value)
        if isinstance(value, BaseException):
            return self._scrub(f"{type(value).__name__}: {value}")
        return value

    def __call__(self, logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        if not self._secrets:
            return event_dict
        return {k: self._scrub(v) for k, v in event_dict.items()}


class _StreamHandler(logging.StreamHandler[Any]):
    """A StreamHandler that goes quiet, without a traceback per record, once its reader is gone.

    `siemconn run | head` closes stdout after a few lines; the service must keep running and keep
    logging to its file. The first EPIPE mutes this handler for the rest of the process.
    """

    muted = False

    def emit(self, record: logging.LogRecord) -> None:
        if self.muted:
            return
        super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, BrokenPipeError):
            self.muted = True
            return
        super().handleError(record)


def setup_logging(
    *,
    log_dir: Path | None,
    fmt: str = "auto",
    level: str = "INFO",
    secrets: Iterable[str] = (),
    stream: Any = None,
) -> _Redactor:
    """Configure structlog + stdlib logging. Returns the redactor so late secrets (tokens) can be added."""
    stream = stream or sys.stdout
    redactor = _Redactor(secrets)
    use_console = fmt == "console" or (fmt == "auto" and hasattr(stream, "isatty") and stream.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redactor,
    ]
    console_renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False) if use_console else structlog.processors.JSONRenderer()
    )
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    handler = _StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, console_renderer],
            foreign_pre_chain=shared,
        )
    )
    root.addHandler(handler)
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(log_dir, 0o750)
        fh = logging.handlers.TimedRotatingFileHandler(
            log_dir / "siemconn.log", when="midnight", utc=True, backupCount=30, encoding="utf-8"
        )
        fh.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.JSONRenderer(),
                ],
                foreign_pre_chain=shared,
            )
        )
        root.addHandler(fh)
    root.setLevel(level)
    # third-party chatter that could print URLs with tokens or just noise
    for noisy in ("httpx", "httpcore", "asyncio", "persistqueue"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    return redactor


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
