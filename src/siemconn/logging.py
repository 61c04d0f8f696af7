"""structlog setup: console (TTY) or JSON lines on stdout, plus a daily-rotated JSON file in log_dir.

Application logs never go to the syslog destinations. Known secrets are scrubbed from every line.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import re
import sys
import urllib.parse
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import structlog

__all__ = ["MIN_FRAGMENT", "REDACTED", "Redactor", "get_logger", "open_private_log", "setup_logging"]

REDACTED = "***"
MIN_FRAGMENT = 12  # a run of this many characters of a secret is masked wherever it appears
_MAX_LATE_SECRETS = 64  # tokens seen at run time; older ones are forgotten (bounded memory)


def _variants(secret: str) -> set[str]:
    """The forms in which `secret` can reach an output: as is, JSON-escaped, repr-escaped, URL-encoded,
    with escaped control characters, and with its whitespace turned into spaces or removed."""
    forms = {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(secret)[1:-1],
        secret.encode("unicode_escape").decode("ascii"),
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret, safe=""),
        re.sub(r"\s", " ", secret),
        re.sub(r"\s", "", secret),
    }
    return {f for f in forms if f}


class Redactor:
    """Masks known secrets in text: every escaped form, and every run of MIN_FRAGMENT or more of their
    characters (a secret cut by a truncation, or split across lines). Also a structlog processor that
    does that anywhere in the event dict.

    Secrets shorter than MIN_FRAGMENT characters are masked only whole (in each form); shorter than 4
    characters, not at all (too many false hits).
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        self._fixed = [s for s in dict.fromkeys(secrets) if s and len(s) >= 4]
        self._late: OrderedDict[str, None] = OrderedDict()
        self._rebuild()

    def _rebuild(self) -> None:
        whole: set[str] = set()
        fragments: set[str] = set()
        for secret in [*self._fixed, *self._late]:
            for form in _variants(secret):
                if len(form) >= MIN_FRAGMENT:
                    fragments.update(form[i : i + MIN_FRAGMENT] for i in range(len(form) - MIN_FRAGMENT + 1))
                elif len(form) >= 4:
                    whole.add(form)
        self._whole = sorted(whole, key=len, reverse=True)
        self._fragments = frozenset(fragments)

    def add(self, secret: str | None) -> None:
        """Also mask `secret` from now on (a token obtained at run time)."""
        if not secret or len(secret) < 4 or secret in self._fixed or secret in self._late:
            return
        self._late[secret] = None
        while len(self._late) > _MAX_LATE_SECRETS:
            self._late.popitem(last=False)
        self._rebuild()

    def scrub_text(self, text: str) -> str:
        for s in self._whole:
            if s in text:
                text = text.replace(s, REDACTED)
        frags = self._fragments
        n = len(text)
        if not frags or n < MIN_FRAGMENT:
            return text
        spans: list[list[int]] = []
        for i in range(n - MIN_FRAGMENT + 1):
            if text[i : i + MIN_FRAGMENT] in frags:
                end = i + MIN_FRAGMENT
                if spans and i <= spans[-1][1]:
                    spans[-1][1] = end
                else:
                    spans.append([i, end])
        if not spans:
            return text
        out: list[str] = []
        pos = 0
        for a, b in spans:
            out.append(text[pos:a])
            out.append(REDACTED)
            pos = b
        out.append(text[pos:])
        return "".join(out)

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scrub_text(value)
        if isinstance(value, dict):
            return {k: self._scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self._scrub(v) for v in value)
        if isinstance(value, BaseException):
            return self.scrub_text(f"{type(value).__name__}: {value}")
        if isinstance(value, bytes | bytearray):
            return self.scrub_text(bytes(value).decode("utf-8", "replace"))
        return value

    def __call__(self, logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        if not self._whole and not self._fragments:
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


class _PrivateRotatingFileHandler(logging.handlers.TimedRotatingFileHandler):
    """A daily-rotated log file created 0640 whatever the umask (also each file after a rotation)."""

    def _open(self) -> Any:
        return open_private_log(self.baseFilename, self.encoding)


def open_private_log(path: str, encoding: str | None) -> Any:
    """Open `path` for appending, created with mode 0640 and tightened to it if it was looser."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, LOG_FILE_MODE)
    try:
        mode = os.fstat(fd).st_mode & 0o777
        if mode & ~LOG_FILE_MODE:
            os.fchmod(fd, mode & LOG_FILE_MODE)
    except OSError:
        pass
    return os.fdopen(fd, "a", encoding=encoding)


LOG_FILE_MODE = 0o640


def setup_logging(
    *,
    log_dir: Path | None,
    fmt: str = "auto",
    level: str = "INFO",
    secrets: Iterable[str] = (),
    stream: Any = None,
) -> Redactor:
    """Configure structlog + stdlib logging. Returns the redactor so late secrets (tokens) can be added."""
    stream = stream or sys.stdout
    redactor = Redactor(secrets)
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
        fh = _PrivateRotatingFileHandler(
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


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """The structlog logger of module `name` (snake_case event names, key/value fields)."""
    return structlog.stdlib.get_logger(name)
