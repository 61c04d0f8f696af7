"""One syslog destination of config.json (`configuration.server[]`) and the syslog vocabulary it uses.

The first four fields are the reference connector's and required; every other field is optional and
its default keeps the reference's behaviour. Each field's rule sits in its annotation (see `rules`):
names (facility, severity, protocol, omrelp's "on"/"off") are normalised to what the sinks use, so a
loaded `ServerConfig` holds only canonical values; the cross-field rules are in `_tls_pair`, whose
name the loader strips from error paths.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Final, Literal, get_args

from pydantic import BeforeValidator, model_validator

from siemconn.config.hosts import is_valid_host
from siemconn.config.rules import Check, Strict, checked, custom_error, int_in, is_int
from siemconn.config.streams import STREAMS

__all__ = [
    "DEFAULT_FORMAT",
    "DEFAULT_RELP_WINDOW",
    "DEFAULT_UDP_MESSAGE_SIZE",
    "DEFAULT_UDP_RATE_LIMIT",
    "FACILITIES",
    "FORMAT_NAMES",
    "FormatName",
    "LEEF_DELIMITERS",
    "LEGACY_HOSTNAME",
    "SEVERITIES",
    "ServerConfig",
]

LEGACY_HOSTNAME = "VECTRA-SYSLOG-CONNECTOR"
# the output formats `format` accepts: each is one module of siemconn.syslog.formats, and its registry
# (`FORMATS`) names the same ones (tests/unit/syslog/test_formats.py checks it)
FormatName = Literal["legacy", "rfc5424", "rfc3164", "cef", "leef"]
FORMAT_NAMES: Final[tuple[str, ...]] = get_args(FormatName)
DEFAULT_FORMAT: Final[FormatName] = "legacy"  # the reference connector's line
# LEEF 2.0 attribute delimiters: tab (LEEF's default) and printable characters JSON only has in strings
LEEF_DELIMITERS: tuple[str, ...] = ("\t", "^", "~", "#", ";", "!", "`", "@", "$", "%", "&", "*", "?")
# Defaults chosen by measurement (docs/reliability.md, bench/relp_window.py and bench/udp_pacing.py).
DEFAULT_RELP_WINDOW = 512
DEFAULT_UDP_RATE_LIMIT = 500
# the largest IPv4 UDP payload: the UDP budget when max_message_size is not set
DEFAULT_UDP_MESSAGE_SIZE = 65507

FACILITIES: dict[str, int] = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
    "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "security": 13, "console": 14,
    "solaris-cron": 15, "local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20,
    "local5": 21, "local6": 22, "local7": 23,
}  # fmt: skip
SEVERITIES: dict[str, int] = {
    "emerg": 0, "alert": 1, "crit": 2, "err": 3, "warning": 4, "notice": 5, "info": 6, "debug": 7,
}  # fmt: skip

_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")
# RFC 5424 PRINTUSASCII (33-126)
_PRINTUSASCII_RE = re.compile(r"^[\x21-\x7e]+$")
_SD_RE = re.compile(r"^(\[[^\s\]=\"]{1,32}( [^\s\]=\"]{1,32}=\"([^\"\\\]]|\\[\"\\\]])*\")*\])+$")


def _matches(pattern: re.Pattern[str], max_len: int | None = None) -> Check:
    """Accepts a string that `pattern` matches, at most `max_len` characters long."""
    return lambda v: (
        isinstance(v, str) and pattern.match(v) is not None and (max_len is None or len(v) <= max_len)
    )


def _protocol(v: Any) -> Any:
    if isinstance(v, str) and v.strip().upper() in ("TCP", "UDP", "TLS", "RELP"):
        return v.strip().upper()
    raise custom_error("protocol", "is not a protocol; expected TCP, UDP, TLS or RELP (any case)")


def _tls(v: Any) -> Any:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in ("on", "off"):
        return v.strip().lower() == "on"
    raise custom_error("tls", 'is not a TLS switch; expected true/false or "on"/"off" (as omrelp\'s tls=)')


def _host(v: Any) -> Any:
    if isinstance(v, str) and v and is_valid_host(v):
        return v.strip("[]")
    raise custom_error("host", "is not a host; expected an IPv4 or IPv6 address or a hostname")


def _level(kind: str, msg: str, names: dict[str, int]) -> BeforeValidator:
    """A syslog facility or severity: a name of `names` (any case) or one of its numbers."""
    top = max(names.values())

    def level(v: Any) -> Any:
        if isinstance(v, str) and v.lower() in names:
            return names[v.lower()]
        if not (is_int(v) and 0 <= v <= top):
            raise custom_error(kind, msg)
        return v

    return BeforeValidator(level)


def _streams(v: Any) -> Any:
    if v is None:
        return v
    if not isinstance(v, list | tuple):
        raise custom_error("streams", 'is not a list of streams; expected e.g. ["detections", "audit"]')
    if not v:
        raise custom_error(
            "streams",
            "is empty; expected at least one of {names}, or leave it out (every stream)",
            names=", ".join(STREAMS),
        )
    seen: list[str] = []
    for item in v:
        if not isinstance(item, str) or item not in STREAMS:
            raise custom_error(
                "streams",
                "holds {item}, which is not a stream; expected a list of {names}",
                item=json.dumps(item, ensure_ascii=False, default=str),
                names=", ".join(STREAMS),
            )
        if item in seen:
            raise custom_error(
                "streams", "lists {item} twice; expected each stream once", item=json.dumps(item)
            )
        seen.append(item)
    return tuple(seen)


_NAME = checked(
    "name", "is not a server name; expected 1+ letters, digits, '_', '.' or '-'", _matches(_NAME_RE)
)
_PORT = checked("port", "is not a port; expected an integer 1-65535", int_in(1, 65535))
_FACILITY = _level(
    "facility", "is not a syslog facility; expected 0-23 or a name such as 'user', 'local0'", FACILITIES
)
_SEVERITY = _level("severity", "is not a syslog severity; expected 0-7 or a name such as 'info'", SEVERITIES)
_HOSTNAME = checked(
    "hostname",
    "is not a syslog hostname; expected 1-255 printable ASCII characters, no spaces",
    _matches(_PRINTUSASCII_RE, 255),
    nullable=True,
)
_APP_NAME = checked(
    "app_name",
    "is not an app-name; expected 1-48 printable ASCII characters, no spaces",
    _matches(_PRINTUSASCII_RE, 48),
)
_SD = checked(
    "sd",
    'is not RFC 5424 STRUCTURED-DATA; expected e.g. [siemconn@32473 tenant="acme"]',
    _matches(_SD_RE),
    nullable=True,
)
_SIZE = checked(
    "size",
    "is not a message size; expected an integer 480-16777216 (bytes per message, framing included; "
    "8000 fits rsyslog's default)",
    int_in(480, 16 * 1024 * 1024),
    nullable=True,
)
_LEEF_DELIMITER = checked(
    "leef_delimiter",
    'is not a LEEF delimiter; expected a tab ("\\t", the default) or one of ^ ~ # ; ! ` @ $ % & * ?',
    lambda v: isinstance(v, str) and v in LEEF_DELIMITERS,
)
_WINDOW = checked(
    "window",
    "is not a RELP window; expected an integer 1-100000 (unacknowledged frames)",
    int_in(1, 100_000),
)
_HEARTBEAT = checked(
    "heartbeat_seconds",
    "is not a heartbeat interval; expected an integer 1-86400 (seconds), or leave it out (no heartbeat)",
    int_in(1, 86_400),
    nullable=True,
)
_UDP_RATE = checked(
    "udp_rate",
    "is not a UDP rate; expected messages per second as an integer >= 0 (0 = unpaced)",
    int_in(0, 10_000_000),
)


class ServerConfig(Strict):
    """One syslog destination. The first four fields are the reference's; the rest are optional."""

    name: Annotated[str, _NAME]
    server_protocol: Annotated[Literal["TCP", "UDP", "TLS", "RELP"], BeforeValidator(_protocol)]
    server_host: Annotated[str, BeforeValidator(_host)]
    server_port: Annotated[int, _PORT]

    format: FormatName = DEFAULT_FORMAT
    framing: Literal["lf", "octet-counting"] = "lf"
    facility: Annotated[int, _FACILITY] = 1
    severity: Annotated[int, _SEVERITY] = 6
    hostname: Annotated[str | None, _HOSTNAME] = None
    app_name: Annotated[str, _APP_NAME] = "siemconn"
    timestamp: Literal["send", "event"] = "send"
    structured_data: Annotated[str | None, _SD] = None
    # size budget (siemconn.syslog.budget): None = 65507 for UDP, no limit for TCP, TLS and RELP
    max_message_size: Annotated[int | None, _SIZE] = None
    oversize: Literal["trim", "drop", "truncate"] | None = None  # None: udp_oversize, else the default
    udp_oversize: Literal["truncate", "drop"] | None = None  # the older name of `oversize`
    include_raw_event: bool = False
    leef_delimiter: Annotated[str, _LEEF_DELIMITER] = "\t"
    tls_ca_file: str | None = None
    tls_verify_hostname: bool = True
    tls_client_cert: str | None = None
    tls_client_key: str | None = None
    tls_min_version: Literal["1.2", "1.3"] = "1.2"
    # RELP (rsyslog omrelp names: tls="on", windowSize)
    tls: Annotated[bool, BeforeValidator(_tls)] = False
    window_size: Annotated[int, _WINDOW] = DEFAULT_RELP_WINDOW
    # UDP: messages per second; 0 = unpaced (the behaviour before pacing existed)
    udp_rate_limit: Annotated[int, _UDP_RATE] = DEFAULT_UDP_RATE_LIMIT
    streams: Annotated[tuple[str, ...] | None, BeforeValidator(_streams)] = None  # None: every enabled stream
    start_at: Literal["now", "retained"] = "now"  # a new server: from now, or with the retained pages
    # in-band heartbeat (siemconn.syslog.heartbeat): a status message every N seconds; None: none
    heartbeat_seconds: Annotated[int | None, _HEARTBEAT] = None

    def takes(self, stream: str) -> bool:
        """True if this server receives the events of `stream` (when that stream is on)."""
        return self.streams is None or stream in self.streams

    @model_validator(mode="after")
    def _tls_pair(self) -> ServerConfig:
        if (self.tls_client_cert is None) != (self.tls_client_key is None):
            raise ValueError("tls_client_cert and tls_client_key must be given together (mutual TLS)")
        if self.tls and self.server_protocol != "RELP":
            raise ValueError(
                f'tls applies to RELP servers; for syslog over TLS set server_protocol "TLS" '
                f"(server {self.name!r} is {self.server_protocol})"
            )
        if self.oversize is not None and self.udp_oversize is not None and self.oversize != self.udp_oversize:
            raise ValueError(
                f"oversize {self.oversize!r} and udp_oversize {self.udp_oversize!r} disagree (server "
                f"{self.name!r}): udp_oversize is the older name of oversize; keep only oversize"
            )
        if self.oversize is not None and self.message_budget is None:
            raise ValueError(
                f"oversize {self.oversize!r} has no effect without a size budget (server {self.name!r} is "
                f"{self.server_protocol}, which has no limit by default); set max_message_size too, e.g. 8000"
            )
        if self.server_protocol == "RELP" and self.framing != "lf":
            raise ValueError(
                f"framing {self.framing!r} does not apply to RELP (server {self.name!r}): RELP frames each "
                "message itself; remove framing"
            )
        return self

    @property
    def message_budget(self) -> int | None:
        """The most bytes one message may take on the wire, framing included (siemconn.syslog.budget):
        max_message_size, else 65507 for UDP (the largest IPv4 UDP payload) and no limit otherwise."""
        if self.max_message_size is not None:
            return self.max_message_size
        return DEFAULT_UDP_MESSAGE_SIZE if self.server_protocol == "UDP" else None

    @property
    def oversize_policy(self) -> Literal["trim", "drop", "truncate"]:
        """What happens to a message above the budget: `oversize`, else `udp_oversize`, else "truncate"
        for UDP (the behaviour before budgets existed) and "trim" for TCP, TLS and RELP."""
        if self.oversize is not None:
            return self.oversize
        if self.udp_oversize is not None:
            return self.udp_oversize
        return "truncate" if self.server_protocol == "UDP" else "trim"

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
