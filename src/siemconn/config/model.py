"""The `configuration` object of config.json: the scheduler, the servers and the service options.

`retry_count`, `scheduler` and `server` are the reference connector's and required; every other
option is new, and its default keeps the reference's behaviour. Each option's rule sits in its
annotation (see `rules`); the rules that span options (a paced UDP batch must fit the write timeout,
server names are unique, at least one stream is on) are model validators.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, Field, model_validator

from siemconn.config.cron import validate_cron
from siemconn.config.hosts import is_valid_host
from siemconn.config.rules import Strict, checked, custom_error, int_in, is_int, is_number, number_in
from siemconn.config.server import ServerConfig
from siemconn.config.streams import OFF, STREAMS

__all__ = ["MAX_PACED_BATCH_SECONDS", "Configuration", "SchedulerConfig"]

MAX_PACED_BATCH_SECONDS = 30.0  # a paced UDP batch must fit well within the writer's 60 s write timeout


def _cron(v: Any) -> Any:
    if v is None or (isinstance(v, str) and v.strip().lower() == OFF):
        return None
    try:
        return validate_cron(v)
    except ValueError as exc:
        raise custom_error(
            "cron",
            "is not a cron expression ({reason}); expected 5 fields 'minute hour day month weekday' "
            "(or 6 with seconds first), e.g. '* * * * *', '*/10 * * * * *' (every 10 seconds) "
            "or '@hourly', or null / \"off\" to turn the stream off",
            reason=str(exc),
        ) from None


Cron = Annotated[str | None, BeforeValidator(_cron)]


class SchedulerConfig(Strict):
    """Cron expressions per stream (5 fields, or 6 with seconds first as aiocron 2 reads them).

    `null` or `"off"` (any case) turns a stream off. audit, detections and entity_scoring must be
    present (the reference's keys; a missing key is more likely a mistake than a wish); health and
    lockdown are off unless set. At least one stream must be on.
    """

    audit: Cron
    detections: Cron
    entity_scoring: Cron
    health: Cron = None
    lockdown: Cron = None

    @model_validator(mode="after")
    def _one_on(self) -> SchedulerConfig:
        if not self.enabled:
            raise ValueError(
                "every stream is off; expected a cron expression for at least one of " + ", ".join(STREAMS)
            )
        return self

    def schedule(self, stream: str) -> str | None:
        """The cron expression of a stream, or None when it is off."""
        value: str | None = getattr(self, stream)
        return value

    @property
    def enabled(self) -> tuple[str, ...]:
        """The streams that are on, in STREAMS order."""
        return tuple(s for s in STREAMS if getattr(self, s) is not None)

    @property
    def disabled(self) -> tuple[str, ...]:
        """The streams that are off, in STREAMS order."""
        return tuple(s for s in STREAMS if getattr(self, s) is None)


def _tz(v: Any) -> Any:
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):  # OSError: a name the file system refuses
        raise custom_error(
            "tz", "is not a time zone; expected an IANA name such as 'UTC' or 'Europe/Paris'"
        ) from None
    return v


def _is_address(v: Any) -> bool:
    """True for HOST:PORT with a valid host (IPv6 in brackets) and a port 1-65535."""
    if not isinstance(v, str):
        return False
    host, _, port = v.rpartition(":")
    return bool(host) and port.isdigit() and 1 <= int(port) <= 65535 and is_valid_host(host.strip("[]"))


Seconds = Annotated[
    float,
    checked("seconds", "is not a duration; expected seconds > 0", lambda v: is_number(v) and 0 < v <= 86400),
]
Count = Annotated[int, checked("count", "is not a count; expected an integer >= 1", int_in(1))]
_RETRY = checked("retry", "is not a retry count; expected an integer (negative = retry forever)", is_int)
_PAGE_SIZE = checked("page_size", "is not a page size; expected an integer 1-1000", int_in(1, 1000))
_LOOKBACK = checked(
    "lookback", "is not a lookback; expected hours 0-8784 (0 = start from now)", number_in(0, 24 * 366)
)
_RETAIN = checked(
    "retain",
    "is not a retention; expected hours 0-8784 (0 = reclaim delivered pages)",
    number_in(0, 24 * 366),
)
_MAX_RESPONSE = checked(
    "mb", "is not a size; expected an integer 1-1024 (MB per API answer)", int_in(1, 1024)
)
_DISK = checked("disk", "is not a size; expected an integer >= 0 (MB)", int_in(0))
_DRAIN_SIZE = checked(
    "drain_batch_size",
    "is not a batch size; expected an integer 1-100000, or null (off: every batch is batch_size)",
    int_in(1, 100_000),
    nullable=True,
)
_DRAIN_BYTES = checked(
    "drain_batch_bytes",
    "is not a size; expected bytes 65536-268435456 (64 KiB-256 MiB)",
    int_in(65_536, 268_435_456),
)
_ADDRESS = checked(
    "addr",
    "is not an address; expected HOST:PORT such as '127.0.0.1:9108', or null (off)",
    _is_address,
    nullable=True,
)


class Configuration(Strict):
    """The `configuration` object of config.json."""

    server: Annotated[list[ServerConfig], Field(min_length=1)]
    scheduler: SchedulerConfig
    retry_count: Annotated[int, _RETRY]

    # --- new options; each default keeps the reference's behaviour -------------------------
    api_version: Literal["v3.3", "v3.4", "v3.5"] = "v3.3"
    # v3.5 detections only: `size` sent as is; None = not sent (the API's own default)
    detection_size: Literal["regular", "detailed"] | None = None
    page_size: Annotated[int, _PAGE_SIZE] = 1000
    initial_lookback_hours: Annotated[float, _LOOKBACK] = 24.0
    include_triaged: bool | None = None
    include_info_category: bool | None = None
    include_score_decreases: bool | None = None
    timezone: Annotated[str, BeforeValidator(_tz)] = "UTC"
    pull_at_startup: bool = True
    http_timeout: Seconds = 30.0
    max_response_mb: Annotated[int, _MAX_RESPONSE] = 8
    api_max_tries: Count = 3
    data_dir: str = "./data"
    log_dir: str = "./logs"
    cert_dir: str = "./cert"
    log_format: Literal["auto", "console", "json"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    queue_max_events: Count = 5_000_000
    min_free_disk_mb: Annotated[int, _DISK] = 256
    batch_size: Count = 500
    drain_batch_size: Annotated[int | None, _DRAIN_SIZE] = None
    drain_batch_bytes: Annotated[int, _DRAIN_BYTES] = 4_194_304
    max_backoff_seconds: Seconds = 300.0
    metrics_address: Annotated[str | None, _ADDRESS] = None
    health_window_seconds: Seconds = 300.0
    # keep delivered pages this long for `siemconn replay` (0: reclaim them)
    retain_hours: Annotated[float, _RETAIN] = 0.0

    @model_validator(mode="after")
    def _size_needs_v35(self) -> Configuration:
        if self.detection_size is not None and self.api_version != "v3.5":
            raise ValueError(
                f"detection_size {self.detection_size!r} is a parameter of the v3.5 detections endpoint, but "
                f'api_version is {self.api_version!r}; set "api_version": "v3.5" or remove detection_size'
            )
        return self

    @model_validator(mode="after")
    def _unique_names(self) -> Configuration:
        for s in self.server:
            rate = s.udp_rate_limit
            if s.server_protocol == "UDP" and rate and self.batch_size / rate > MAX_PACED_BATCH_SECONDS:
                raise ValueError(
                    f"server {s.name!r}: udp_rate_limit {rate} sends one batch of {self.batch_size} events in "
                    f"{self.batch_size / rate:.0f} s, more than {MAX_PACED_BATCH_SECONDS:g} s; raise "
                    "udp_rate_limit or lower batch_size"
                )
        seen: set[str] = set()
        for s in self.server:
            if s.name in seen:
                raise ValueError(f"server name {s.name!r} is used twice; expected unique names")
            seen.add(s.name)
        return self

    def server_streams(self, server: ServerConfig) -> tuple[str, ...]:
        """The enabled streams a server receives (its `streams`, default every enabled stream)."""
        return tuple(s for s in self.scheduler.enabled if server.takes(s))
