"""`siemconn run`: logging set up before anything else, the service on one event loop, an exit code out.

Invariants: the client secret is registered with the log redactor before the service starts, and every
secret the service learns later is added to it (`on_secret`); a crash is logged and gives
`ExitCode.UNEXPECTED`, never a traceback on stderr alone.
"""

from __future__ import annotations

import asyncio

from siemconn.config import Settings
from siemconn.exitcodes import ExitCode
from siemconn.logging import get_logger, setup_logging
from siemconn.ops.malloc import tune_process
from siemconn.service.process import Service

__all__ = ["run_service"]

log = get_logger("siemconn.service")


def run_service(settings: Settings) -> int:
    """`siemconn run`: set up logging, run the service, return the process exit code."""
    cfg = settings.configuration
    redactor = setup_logging(
        log_dir=settings.log_dir,
        fmt=cfg.log_format,
        level=cfg.log_level,
        secrets=[settings.credentials.client_secret.get_secret_value()],
    )
    log.debug("process_tuned", malloc=tune_process())
    try:
        return asyncio.run(Service(settings, on_secret=redactor.add).run())
    except KeyboardInterrupt:
        return ExitCode.OK
    except Exception as exc:  # pragma: no cover - last resort, logged for the operator
        log.exception("siemconn_crashed", error=repr(exc))
        return ExitCode.UNEXPECTED
