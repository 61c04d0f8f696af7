"""One typed settings object: config.json (the reference connector's format) plus environment.

`load_settings(path)` loads both (for `run` and `check`); `load_local_settings(path)` loads config.json
alone, for the commands that never call the API (`status`, `send-test`), so they run without
BASE_URL / CLIENT_ID / CLIENT_SECRET. Both report every problem at once in a `ConfigError`, config.json's
problems under the file's absolute path and the environment's under "environment", each naming the JSON
path or variable, the bad value and what is expected; they never raise anything else and never print
a secret.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from siemconn.errors import ConfigError

__all__ = [
    "ConfigFile",
    "LEEF_DELIMITERS",
    "LocalSettings",
    "OFF",
    "REQUIRED_STREAMS",
    "Configuration",
    "Credentials",
    "FACILITIES",
    "LEGACY_HOSTNAME",
    "SEVERITIES",
    "STREAMS",
    "SchedulerConfig",
    "ServerConfig",
    "Settings",
    "is_loopback",
    "is_valid_host",
    "load_configuration",
    "load_local_settings",
    "load_settings",
    "validate_cron",
]

STREAMS: tuple[str, ...] = ("audit", "detections", "entity_scoring", "health", "lockdown")
# the reference's three streams: their `scheduler` keys are required; health and lockdown are opt-in
REQUIRED_STREAMS: tuple[str, ...] = ("audit", "detections", "entity_scoring")
OFF = "off"  # `"scheduler": {"audit": "off"}` (or null) turns a stream off
LEGACY_HOSTNAME = "VECTRA-SYSLOG-CONNECTOR"
# LEEF 2.0 attribute delimiters: tab (LEEF's default) and printable characters JSON only has in strings
LEEF_DELIMITERS: tuple[str, ...] = ("\t", "^", "~", "#", ";", "!", "`", "@", "$", "%", "&", "*", "?")

_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")
_HOST_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
# RFC 5424 PRINTUSASCII (33-126)
_PRINTUSASCII_RE = re.compile(r"^[\x21-\x7e]+$")
# Defaults chosen by measurement (docs/reliability.md, bench/relp_window.py and bench/udp_pacing.py).
DEFAULT_RELP_WINDOW = 512
DEFAULT_UDP_RATE_LIMIT = 500
MAX_PACED_BATCH_SECONDS = 30.0  # a paced UDP batch must fit well within the writer's 60 s write timeout

FACILITIES: dict[str, int] = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
    "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "security": 13, "console": 14,
    "solaris-cron": 15, "local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20,
    "local5": 21, "local6": 22, "local7": 23,
}  # fmt: skip
SEVERITIES: dict[str, int] = {
    "emerg": 0, "alert": 1, "crit": 2, "err": 3, "warning": 4, "notice": 5, "info": 6, "debug": 7,
}  # fmt: skip


def _err(kind: str, msg: str, **ctx: Any) -> PydanticCustomError:
    return PydanticCustomError(kind, msg, ctx)


# cronsim (aiocron 2's parser) has no "@" nicknames; the usual ones are translated (cron(8)'s meaning)
CRON_NICKNAMES: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_CRON_FIELDS_5 = ("minute", "hour", "day of month", "month", "weekday")
_CRON_FIELDS_6 = ("seconds", *_CRON_FIELDS_5)
# cronsim's "Bad <field>" names -> our field names
_CRONSIM_FIELD = {
    "second": "seconds",
    "minute": "minute",
    "hour": "hour",
    "day-of-month": "day of month",
    "month": "month",
    "day-of-week": "weekday",
}


def validate_cron(spec: str) -> str:
    """Return the expression aiocron will run for `spec`, else raise ValueError with the reason.

    Five fields are `minute hour day month weekday`. Six fields put **seconds first** (aiocron 2 hands
    the expression to cronsim, which reads `seconds minute hour day month weekday`). The `@hourly` family
    is translated to its five-field form; `@reboot` has no schedule and is refused (pull_at_startup does
    that job).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("empty")
    nick = spec.strip().lower()
    if nick.startswith("@"):
        if nick in CRON_NICKNAMES:
            return CRON_NICKNAMES[nick]
        if nick == "@reboot":
            raise ValueError("'@reboot' is not a schedule; pull_at_startup (default true) pulls at start-up")
        raise ValueError(f"unknown nickname {spec.strip()!r}; known: {', '.join(CRON_NICKNAMES)}")
    fields = spec.split()
    if len(fields) not in (5, 6):
        raise ValueError(f"has {len(fields)} fields")
    names = _CRON_FIELDS_6 if len(fields) == 6 else _CRON_FIELDS_5
    try:
        CronSim(spec, datetime.now(UTC))
    except (CronSimError, ValueError, KeyError, IndexError) as exc:
        reason = str(exc) or type(exc).__name__
        bad = reason.removeprefix("Bad ").strip().lower()
        if bad in _CRONSIM_FIELD and _CRONSIM_FIELD[bad] in names:
            name = _CRONSIM_FIELD[bad]
            pos = names.index(name)
            reason = f"field {pos + 1} ({name}) {fields[pos]!r} is out of range or malformed"
            if len(fields) == 6 and name == "weekday":  # perhaps meant as seconds (croniter's order)
                reason += _SECONDS_FIRST
                if _seconds_last(fields):
                    reason += f", did you mean '{' '.join([fields[5], *fields[:5]])}'?"
        raise ValueError(reason) from None
    if len(fields) == 6 and fields[0] == "*" and fields[5].startswith("*/"):
        # valid, but "every second on some weekdays": the seconds-last mistake (croniter's order)
        raise ValueError(
            f"field 6 (weekday) {fields[5]!r} with field 1 (seconds) '*' runs every second on some weekdays"
            + f"{_SECONDS_FIRST}, did you mean '{' '.join([fields[5], *fields[:5]])}'?"
        )
    return spec


_SECONDS_FIRST = (
    "; in a 6-field expression the seconds field comes FIRST ('seconds minute hour day month weekday')"
)


def _seconds_last(fields: list[str]) -> bool:
    """True if `fields` parse once the last field is moved to the front (seconds written last)."""
    try:
        CronSim(" ".join([fields[5], *fields[:5]]), datetime.now(UTC))
    except (CronSimError, ValueError, KeyError, IndexError):
        return False
    return True


_URL_RE = re.compile(
    r"^(?P<scheme>[Hh][Tt][Tt][Pp][Ss]?)://(?P<host>\[[0-9A-Fa-f:.]+\]|[^/\s:\[\]]+)(:\d{1,5})?(/[^\s]*)?$"
)


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1), the only hosts plain http may reach."""
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_valid_host(host: str) -> bool:
    """True for an IPv4 or IPv6 literal or an RFC 1123 hostname."""
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        pass
    if len(host) > 253 or host.endswith(".."):
        return False
    labels = host.rstrip(".").split(".")
    return all(_HOST_LABEL_RE.match(label) for label in labels) and not labels[-1].isdigit()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ServerConfig(_Strict):
    """One syslog destination. The first four fields are the reference's; the rest are optional."""

    name: str
    server_protocol: Literal["TCP", "UDP", "TLS", "RELP"]
    server_host: str
    server_port: int

    format: Literal["legacy", "rfc5424", "rfc3164", "cef", "leef"] = "legacy"
    framing: Literal["lf", "octet-counting"] = "lf"
    facility: int = 1
    severity: int = 6
    hostname: str | None = None
    app_name: str = "siemconn"
    timestamp: Literal["send", "event"] = "send"
    structured_data: str | None = None
    max_message_size: int = 65507
    udp_oversize: Literal["truncate", "drop"] = "truncate"
    include_raw_event: bool = False
    leef_delimiter: str = "\t"
    tls_ca_file: str | None = None
    tls_verify_hostname: bool = True
    tls_client_cert: str | None = None
    tls_client_key: str | None = None
    tls_min_version: Literal["1.2", "1.3"] = "1.2"
    # RELP (rsyslog omrelp names: tls="on", windowSize)
    tls: bool = False
    window_size: int = DEFAULT_RELP_WINDOW
    # UDP: messages per second; 0 = unpaced (the behaviour before pacing existed)
    udp_rate_limit: int = DEFAULT_UDP_RATE_LIMIT
    streams: tuple[str, ...] | None = None  # None: every enabled stream
    start_at: Literal["now", "retained"] = "now"  # a new server: from now, or with the retained pages

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, v: Any) -> Any:
        if not isinstance(v, str) or not _NAME_RE.match(v):
            raise _err("name", "is not a server name; expected 1+ letters, digits, '_', '.' or '-'")
        return v

    @field_validator("server_protocol", mode="before")
    @classmethod
    def _protocol(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip().upper() in ("TCP", "UDP", "TLS", "RELP"):
            return v.strip().upper()
        raise _err("protocol", "is not a protocol; expected TCP, UDP, TLS or RELP (any case)")

    @field_validator("tls", mode="before")
    @classmethod
    def _tls(cls, v: Any) -> Any:
        if isinstance(v, bool):
            return v
        if isinstance(v, str) and v.strip().lower() in ("on", "off"):
            return v.strip().lower() == "on"
        raise _err("tls", 'is not a TLS switch; expected true/false or "on"/"off" (as omrelp\'s tls=)')

    @field_validator("window_size", mode="before")
    @classmethod
    def _window(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 100_000:
            raise _err("window", "is not a RELP window; expected an integer 1-100000 (unacknowledged frames)")
        return v

    @field_validator("udp_rate_limit", mode="before")
    @classmethod
    def _udp_rate(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 10_000_000:
            raise _err(
                "udp_rate", "is not a UDP rate; expected messages per second as an integer >= 0 (0 = unpaced)"
            )
        return v

    @field_validator("server_host", mode="before")
    @classmethod
    def _host(cls, v: Any) -> Any:
        if isinstance(v, str) and v and is_valid_host(v):
            return v.strip("[]")
        raise _err("host", "is not a host; expected an IPv4 or IPv6 address or a hostname")

    @field_validator("server_port", mode="before")
    @classmethod
    def _port(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 65535:
            raise _err("port", "is not a port; expected an integer 1-65535")
        return v

    @field_validator("facility", mode="before")
    @classmethod
    def _facility(cls, v: Any) -> Any:
        if isinstance(v, str) and v.lower() in FACILITIES:
            return FACILITIES[v.lower()]
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 23:
            raise _err(
                "facility", "is not a syslog facility; expected 0-23 or a name such as 'user', 'local0'"
            )
        return v

    @field_validator("severity", mode="before")
    @classmethod
    def _severity(cls, v: Any) -> Any:
        if isinstance(v, str) and v.lower() in SEVERITIES:
            return SEVERITIES[v.lower()]
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 7:
            raise _err("severity", "is not a syslog severity; expected 0-7 or a name such as 'info'")
        return v

    @field_validator("hostname", mode="before")
    @classmethod
    def _hostname(cls, v: Any) -> Any:
        if v is None:
            return v
        if not isinstance(v, str) or not _PRINTUSASCII_RE.match(v) or len(v) > 255:
            raise _err(
                "hostname", "is not a syslog hostname; expected 1-255 printable ASCII characters, no spaces"
            )
        return v

    @field_validator("app_name", mode="before")
    @classmethod
    def _app_name(cls, v: Any) -> Any:
        if not isinstance(v, str) or not _PRINTUSASCII_RE.match(v) or len(v) > 48:
            raise _err("app_name", "is not an app-name; expected 1-48 printable ASCII characters, no spaces")
        return v

    @field_validator("structured_data", mode="before")
    @classmethod
    def _sd(cls, v: Any) -> Any:
        if v is None:
            return v
        if not isinstance(v, str) or not re.match(
            r"^(\[[^\s\]=\"]{1,32}( [^\s\]=\"]{1,32}=\"([^\"\\\]]|\\[\"\\\]])*\")*\])+$", v
        ):
            raise _err("sd", 'is not RFC 5424 STRUCTURED-DATA; expected e.g. [siemconn@32473 tenant="acme"]')
        return v

    @field_validator("max_message_size", mode="before")
    @classmethod
    def _max_size(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int) or not 480 <= v <= 16 * 1024 * 1024:
            raise _err("size", "is not a message size; expected an integer 480-16777216 (bytes)")
        return v

    @field_validator("streams", mode="before")
    @classmethod
    def _streams(cls, v: Any) -> Any:
        if v is None:
            return v
        if not isinstance(v, list | tuple):
            raise _err("streams", 'is not a list of streams; expected e.g. ["detections", "audit"]')
        if not v:
            raise _err(
                "streams",
                "is empty; expected at least one of {names}, or leave it out (every stream)",
                names=", ".join(STREAMS),
            )
        seen: list[str] = []
        for item in v:
            if not isinstance(item, str) or item not in STREAMS:
                raise _err(
                    "streams",
                    "holds {item}, which is not a stream; expected a list of {names}",
                    item=json.dumps(item, ensure_ascii=False, default=str),
                    names=", ".join(STREAMS),
                )
            if item in seen:
                raise _err("streams", "lists {item} twice; expected each stream once", item=json.dumps(item))
            seen.append(item)
        return tuple(seen)

    def takes(self, stream: str) -> bool:
        """True if this server receives the events of `stream` (when that stream is on)."""
        return self.streams is None or stream in self.streams

    @field_validator("leef_delimiter", mode="before")
    @classmethod
    def _leef_delimiter(cls, v: Any) -> Any:
        if not isinstance(v, str) or v not in LEEF_DELIMITERS:
            raise _err(
                "leef_delimiter",
                'is not a LEEF delimiter; expected a tab ("\\t", the default) or one of ^ ~ # ; ! ` @ $ % & * ?',
            )
        return v

    @model_validator(mode="after")
    def _tls_pair(self) -> ServerConfig:
        if (self.tls_client_cert is None) != (self.tls_client_key is None):
            raise ValueError("tls_client_cert and tls_client_key must be given together (mutual TLS)")
        if self.tls and self.server_protocol != "RELP":
            raise ValueError(
                f'tls applies to RELP servers; for syslog over TLS set server_protocol "TLS" '
                f"(server {self.name!r} is {self.server_protocol})"
            )
        if self.server_protocol == "RELP" and self.framing != "lf":
            raise ValueError(
                f"framing {self.framing!r} does not apply to RELP (server {self.name!r}): RELP frames each "
                "message itself; remove framing"
            )
        return self

    @property
    def uses_tls(self) -> bool:
        """True for TLS servers and RELP servers with tls on."""
        return self.server_protocol == "TLS" or (self.server_protocol == "RELP" and self.tls)

    def ca_file(self, cert_dir: Path) -> Path:
        """The CA file for a TLS server: tls_ca_file, else the reference's cert/NAME.pem."""
        return Path(self.tls_ca_file) if self.tls_ca_file else cert_dir / f"{self.name}.pem"

    @property
    def label(self) -> str:
        protocol = "RELP+TLS" if self.server_protocol == "RELP" and self.tls else self.server_protocol
        return f"{self.name} ({protocol} {self.server_host}:{self.server_port})"


class SchedulerConfig(_Strict):
    """Cron expressions per stream (5 fields, or 6 with seconds first as aiocron 2 reads them).

    `null` or `"off"` (any case) turns a stream off. audit, detections and entity_scoring must be
    present (the reference's keys; a missing key is more likely a mistake than a wish); health and
    lockdown are off unless set. At least one stream must be on.
    """

    audit: str | None
    detections: str | None
    entity_scoring: str | None
    health: str | None = None
    lockdown: str | None = None

    @field_validator(*STREAMS, mode="before")
    @classmethod
    def _cron(cls, v: Any) -> Any:
        if v is None or (isinstance(v, str) and v.strip().lower() == OFF):
            return None
        try:
            return validate_cron(v)
        except ValueError as exc:
            raise _err(
                "cron",
                "is not a cron expression ({reason}); expected 5 fields 'minute hour day month weekday' "
                "(or 6 with seconds first), e.g. '* * * * *', '*/10 * * * * *' (every 10 seconds) "
                "or '@hourly', or null / \"off\" to turn the stream off",
                reason=str(exc),
            ) from None

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


class Configuration(_Strict):
    """The `configuration` object of config.json."""

    server: Annotated[list[ServerConfig], Field(min_length=1)]
    scheduler: SchedulerConfig
    retry_count: int

    # --- new options; each default keeps the reference's behaviour -------------------------
    api_version: Literal["v3.3", "v3.4"] = "v3.3"
    page_size: int = 1000
    initial_lookback_hours: float = 24.0
    include_triaged: bool | None = None
    include_info_category: bool | None = None
    include_score_decreases: bool | None = None
    timezone: str = "UTC"
    pull_at_startup: bool = True
    http_timeout: float = 30.0
    max_response_mb: int = 8
    api_max_tries: int = 3
    data_dir: str = "./data"
    log_dir: str = "./logs"
    cert_dir: str = "./cert"
    log_format: Literal["auto", "console", "json"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    queue_max_events: int = 5_000_000
    min_free_disk_mb: int = 256
    batch_size: int = 500
    drain_batch_size: int | None = None
    drain_batch_bytes: int = 4_194_304
    max_backoff_seconds: float = 300.0
    metrics_address: str | None = None
    health_window_seconds: float = 300.0
    retain_hours: float = 0.0  # keep delivered pages this long for `siemconn replay` (0: reclaim them)

    @field_validator("retry_count", mode="before")
    @classmethod
    def _retry(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int):
            raise _err("retry", "is not a retry count; expected an integer (negative = retry forever)")
        return v

    @field_validator("page_size", mode="before")
    @classmethod
    def _page_size(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 1000:
            raise _err("page_size", "is not a page size; expected an integer 1-1000")
        return v

    @field_validator("initial_lookback_hours", mode="before")
    @classmethod
    def _lookback(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 24 * 366:
            raise _err("lookback", "is not a lookback; expected hours 0-8784 (0 = start from now)")
        return v

    @field_validator("retain_hours", mode="before")
    @classmethod
    def _retain(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 24 * 366:
            raise _err("retain", "is not a retention; expected hours 0-8784 (0 = reclaim delivered pages)")
        return v

    @field_validator("timezone", mode="before")
    @classmethod
    def _tz(cls, v: Any) -> Any:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise _err(
                "tz", "is not a time zone; expected an IANA name such as 'UTC' or 'Europe/Paris'"
            ) from None
        return v

    @field_validator("http_timeout", "max_backoff_seconds", "health_window_seconds", mode="before")
    @classmethod
    def _positive(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= 86400:
            raise _err("seconds", "is not a duration; expected seconds > 0")
        return v

    @field_validator("api_max_tries", "batch_size", "queue_max_events", mode="before")
    @classmethod
    def _count(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise _err("count", "is not a count; expected an integer >= 1")
        return v

    @field_validator("drain_batch_size", mode="before")
    @classmethod
    def _drain_size(cls, v: Any) -> Any:
        if v is None:
            return v
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 100_000:
            raise _err(
                "drain_batch_size",
                "is not a batch size; expected an integer 1-100000, or null (off: every batch is batch_size)",
            )
        return v

    @field_validator("drain_batch_bytes", mode="before")
    @classmethod
    def _drain_bytes(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int) or not 65_536 <= v <= 268_435_456:
            raise _err("drain_batch_bytes", "is not a size; expected bytes 65536-268435456 (64 KiB-256 MiB)")
        return v

    @field_validator("max_response_mb", mode="before")
    @classmethod
    def _max_response(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 1024:
            raise _err("mb", "is not a size; expected an integer 1-1024 (MB per API answer)")
        return v

    @field_validator("min_free_disk_mb", mode="before")
    @classmethod
    def _disk(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise _err("disk", "is not a size; expected an integer >= 0 (MB)")
        return v

    @field_validator("metrics_address", mode="before")
    @classmethod
    def _metrics(cls, v: Any) -> Any:
        if v is None:
            return v
        if isinstance(v, str):
            host, _, port = v.rpartition(":")
            if host and port.isdigit() and 1 <= int(port) <= 65535 and is_valid_host(host.strip("[]")):
                return v
        raise _err("addr", "is not an address; expected HOST:PORT such as '127.0.0.1:9108', or null (off)")

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


class Credentials(BaseSettings):
    """BASE_URL, CLIENT_ID and CLIENT_SECRET (or CLIENT_SECRET_FILE) from the environment."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=True, frozen=True)

    base_url: str = Field(validation_alias=AliasChoices("BASE_URL"))
    client_id: str = Field(validation_alias=AliasChoices("CLIENT_ID"))
    client_secret: SecretStr = Field(validation_alias=AliasChoices("CLIENT_SECRET"))

    @field_validator("base_url", mode="before")
    @classmethod
    def _url(cls, v: Any) -> Any:
        v = str(v).strip()
        m = _URL_RE.match(v)
        if not m:
            raise _err(
                "url", "is not a URL; expected https://HOST such as https://tenant.uw2.portal.vectra.ai"
            )
        if m.group("scheme").lower() == "http" and not is_loopback(m.group("host")):
            raise _err(
                "plain_http",
                "uses plain http to a host that is not this machine, which would send the client secret "
                "and every token unencrypted; expected https:// (plain http is allowed only for "
                "loopback hosts: 127.0.0.0/8, ::1, localhost)",
            )
        return v.rstrip("/")

    @field_validator("client_id", mode="before")
    @classmethod
    def _client_id(cls, v: Any) -> Any:
        if not str(v).strip():
            raise _err("empty", "is empty; expected the API client id from the Vectra UI")
        return str(v).strip()


class LocalSettings(BaseModel):
    """config.json, validated, without the API credentials: what `status` and `send-test` need.

    The commands that never call the Vectra API take this type, so they cannot reach for a credential
    and run with BASE_URL / CLIENT_ID / CLIENT_SECRET unset. `Settings` adds the credentials.
    """

    model_config = ConfigDict(frozen=True)

    configuration: Configuration
    config_path: Path
    secret_file: Path | None = None  # CLIENT_SECRET_FILE when the secret came from it (permission check)

    @property
    def servers(self) -> list[ServerConfig]:
        return self.configuration.server

    @property
    def data_dir(self) -> Path:
        return self._rel(self.configuration.data_dir)

    @property
    def log_dir(self) -> Path:
        return self._rel(self.configuration.log_dir)

    @property
    def cert_dir(self) -> Path:
        return self._rel(self.configuration.cert_dir)

    def _rel(self, p: str) -> Path:
        """Relative directories are taken from the current directory, as the reference does."""
        return Path(p)


class Settings(LocalSettings):
    """Everything siemconn needs, validated: the parsed config.json and the credentials."""

    credentials: Credentials


class ConfigFile(_Strict):
    configuration: Configuration


# --- loading -------------------------------------------------------------------------------


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


_EXPECT = {
    "missing": "is missing; expected this field",
    "extra_forbidden": "is not a known option; check its spelling against the README's configuration reference",
    "bool_type": "is not a boolean; expected true or false",
    "bool_parsing": "is not a boolean; expected true or false",
    "string_type": "is not a string; expected text in double quotes",
    "list_type": "is not a list; expected [ ... ]",
    "model_type": "is not an object; expected { ... }",
    "dict_type": "is not an object; expected { ... }",
    "too_short": "is empty; expected at least one entry",
    "int_type": "is not an integer",
    "float_type": "is not a number",
}


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """The option names valid at the object that holds `loc`'s last key (for "did you mean")."""
    inner: dict[str, type[BaseModel]] = {
        "configuration": Configuration,
        "server": ServerConfig,
        "scheduler": SchedulerConfig,
    }
    model: type[BaseModel] = ConfigFile
    for part in loc[:-1]:
        if isinstance(part, int):  # a list index: the item's model is the list's
            continue
        nxt = inner.get(str(part))
        if str(part) not in model.model_fields or nxt is None:
            return []
        model = nxt
    return list(model.model_fields)


def suggest_key(key: str, known: list[str]) -> str | None:
    """The known option closest to a misspelt `key` (difflib ratio >= 0.6), or None."""
    match = difflib.get_close_matches(key.lower(), known, n=1, cutoff=0.6)
    return match[0] if match else None


def _problems(exc: ValidationError, prefix: tuple[Any, ...] = ()) -> list[str]:
    out: list[str] = []
    for e in exc.errors(include_url=False):
        loc = prefix + tuple(e["loc"])
        # the tagged-union / after-validator noise pydantic adds
        loc = tuple(p for p in loc if p not in ("function-after[_tls_pair(), ServerConfig]",))
        kind = e["type"]
        path = _path(loc)
        if kind == "missing":
            out.append(f"{path} {_EXPECT['missing']}")
            continue
        value = _short(e.get("input"))
        if kind == "extra_forbidden" and loc:
            near = suggest_key(str(loc[-1]), _known_keys(loc))
            if near is not None:
                out.append(f'{path} is not a known option; did you mean "{near}"?')
                continue
        if kind == "literal_error":
            expected = e.get("ctx", {}).get("expected", "")
            out.append(f"{path}: {value} is not allowed; expected one of {expected}")
        elif kind in _EXPECT:
            out.append(f"{path}: {value} {_EXPECT[kind]}")
        elif kind == "value_error":
            msg = str(e.get("msg", "")).removeprefix("Value error, ")
            out.append(f"{path}: {msg}")
        else:
            out.append(f"{path}: {value} {e.get('msg')}")
    return out


def _read_json(path: Path) -> Any:
    path = path.absolute()  # every message names the file the process actually looked for
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [
                f"{path}: file not found; pass --config PATH to an existing config.json (see config.example.json)"
            ],
            source=str(path),
        ) from None
    except IsADirectoryError:
        raise ConfigError(
            [f"{path}: is a directory; expected a config.json file"], source=str(path)
        ) from None
    except PermissionError:
        raise ConfigError(
            [f"{path}: permission denied; make the file readable by the user running siemconn"],
            source=str(path),
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [f"{path}: not UTF-8 text (byte {exc.start}); save the file as UTF-8"], source=str(path)
        ) from None
    except OSError as exc:
        raise ConfigError(
            [f"{path}: cannot read ({exc.strerror}); check the path"], source=str(path)
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            [
                f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}; fix the syntax there"
            ],
            source=str(path),
        ) from None
    except RecursionError:
        raise ConfigError(
            [f"{path}: JSON nested too deeply; expected the config.json shape"], source=str(path)
        ) from None


def _secret_file(environ: dict[str, str]) -> Path | None:
    name = environ.get("CLIENT_SECRET_FILE")
    return Path(name) if name and not environ.get("CLIENT_SECRET") else None


def _credentials(environ: dict[str, str]) -> tuple[Credentials | None, list[str]]:
    env = dict(environ)
    problems: list[str] = []
    secret_file_failed = False
    secret_file = env.get("CLIENT_SECRET_FILE")
    if secret_file and not env.get("CLIENT_SECRET"):
        try:
            env["CLIENT_SECRET"] = Path(secret_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            secret_file_failed = True
            problems.append(
                f"env CLIENT_SECRET_FILE: {secret_file!r} cannot be read ({reason}); "
                "expected a readable file holding the client secret"
            )
    for name, what in (
        ("BASE_URL", "the Vectra portal URL, e.g. https://tenant.uw2.portal.vectra.ai"),
        ("CLIENT_ID", "the API client id"),
        ("CLIENT_SECRET", "the API client secret (or CLIENT_SECRET_FILE pointing to a file)"),
    ):
        if not env.get(name, "").strip() and not (name == "CLIENT_SECRET" and secret_file_failed):
            problems.append(f"env {name} is not set; expected {what}")
    if problems:
        return None, problems
    try:
        creds = Credentials.model_validate({k: env[k] for k in ("BASE_URL", "CLIENT_ID", "CLIENT_SECRET")})
    except ValidationError as exc:
        for e in exc.errors(include_url=False):
            name = str(e["loc"][0]).upper() if e["loc"] else "?"
            if name == "CLIENT_SECRET":
                problems.append("env CLIENT_SECRET is invalid; expected the API client secret")
            else:
                problems.append(f"env {name}: {_short(e.get('input'))} {e.get('msg')}")
        return None, problems
    return creds, []


def load_settings(path: str | os.PathLike[str], environ: dict[str, str] | None = None) -> Settings:
    """Load and validate config.json and the environment; raise ConfigError listing every problem."""
    try:
        return _load(Path(path), dict(os.environ if environ is None else environ))
    except ConfigError:
        raise
    except Exception as exc:  # the loader never raises anything but ConfigError
        raise ConfigError([f"{path}: cannot be loaded ({type(exc).__name__}); check the file"]) from None


def load_local_settings(path: str | os.PathLike[str]) -> LocalSettings:
    """Load and validate config.json alone (no API credentials), for `status` and `send-test`."""
    p = Path(path)
    try:
        return LocalSettings(configuration=_load_file(p), config_path=p)
    except ConfigError:
        raise
    except Exception as exc:  # the loader never raises anything but ConfigError
        raise ConfigError([f"{path}: cannot be loaded ({type(exc).__name__}); check the file"]) from None


def load_configuration(path: str | os.PathLike[str]) -> Configuration:
    """Validate config.json alone (no environment), for tools that need only the file."""
    return _load_file(Path(path))


def _file_problems(raw: Any) -> tuple[Configuration | None, list[str]]:
    if not isinstance(raw, dict):
        return None, [f'(top level): {_short(raw)} is not an object; expected {{"configuration": {{...}}}}']
    try:
        return ConfigFile.model_validate(raw).configuration, []
    except ValidationError as exc:
        return None, _problems(exc)


def _load_file(path: Path) -> Configuration:
    configuration, problems = _file_problems(_read_json(path))
    if configuration is None:
        raise ConfigError(problems, source=str(path.absolute()))
    return configuration


def _load(path: Path, environ: dict[str, str]) -> Settings:
    configuration, problems = _file_problems(_read_json(path))
    creds, env_problems = _credentials(environ)
    if problems or env_problems or configuration is None or creds is None:
        raise ConfigError(problems, source=str(path.absolute()), environment=env_problems)
    return Settings(
        configuration=configuration, credentials=creds, config_path=path, secret_file=_secret_file(environ)
    )
