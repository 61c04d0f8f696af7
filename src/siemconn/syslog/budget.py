"""The size budget of one server (`max_message_size`) and its `oversize` policy.

How the budget counts: the whole message as it goes on the wire for that server, i.e. the syslog header,
the payload and the framing siemconn adds around it:

- TCP and TLS, LF framing: the message plus its LF;
- TCP and TLS, octet-counting (RFC 6587): the message plus its octet count and the space after it;
- RELP: the message (RELP's DATA); the RELP frame around it (transaction number, command, DATALEN) is the
  protocol's, and receivers do not count it (imrelp's maxDataSize bounds DATA only);
- UDP: the datagram (no framing).

Receivers count less (rsyslog's maxMessageSize and imrelp's maxDataSize count the message without LF or
octet count; docs/formats.md has the measured figures), so a budget equal to a receiver's limit always
fits it.

The default keeps the behaviour before budgets existed: 65,507 bytes for UDP (the largest IPv4 UDP
payload) with `truncate`, no limit for TCP, TLS and RELP (`ServerConfig.message_budget`,
`ServerConfig.oversize_policy`).

Policies (`Oversizer.fit`), for a message over the budget:

- `trim`: the event's bulkiest fields are removed until the message fits (siemconn.syslog.trim), with the
  `siemconn_trimmed` marker. In CEF and LEEF the raw event goes first, then event fields; the marker is the
  extension field `siemconnTrimmed` (JSON text), last on the line. An event that cannot fit even with
  every removable field gone is handled as `drop`, and says so;
- `drop`: nothing is sent;
- `truncate`: the message is cut to the budget (for CEF and LEEF never inside a UTF-8 sequence or, CEF,
  an escape), as UDP always did.

Every oversize event is kept whole in the quarantine (reason `oversize`) by the writer, whatever the
policy, so `siemconn quarantine export` gives back its exact stored text.

Hot path: `Oversizer.limit` is the most bytes the message itself (framing excluded) may have; a message
is looked at only when its length is over it, so events under the budget cost one length comparison and
are never parsed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from siemconn.config import STREAM_DEFS, ServerConfig
from siemconn.syslog.format import Formatter
from siemconn.syslog.formats import MappedFormat
from siemconn.syslog.mapping import RAW_EVENT_LABEL
from siemconn.syslog.trim import MARKER, trim_event

__all__ = [
    "BUDGET_HINT",
    "SIEM_MARKER_KEY",
    "Fitted",
    "Oversizer",
    "framing_overhead",
    "message_limit",
]

# `siemconn check`'s line for a TCP, TLS or RELP server without a budget (figures: docs/formats.md)
BUDGET_HINT: Final = (
    "hint: no max_message_size, so events are sent whole and a receiver cuts larger ones (rsyslog imtcp and "
    "imrelp: 8096 bytes by default, Splunk TRUNCATE 10000, Wazuh 6144, QRadar: its TCP syslog payload "
    'setting); set e.g. "max_message_size": 8000, "oversize": "trim" (docs/formats.md, Message size)'
)
# the marker's CEF and LEEF extension key (CEF: a vendor-defined key, as the CEF guide allows)
SIEM_MARKER_KEY: Final = "siemconnTrimmed"

Action = Literal["trimmed", "truncated", "dropped", "unfittable"]
# streams with a CEF/LEEF mapping: only they can leave the raw event out (the others always carry it)
_MAPPED_STREAMS: Final = frozenset(d.name for d in STREAM_DEFS if d.mapper is not None)


def framing_overhead(server: ServerConfig, message_len: int) -> int:
    """Bytes the framing adds to a message of `message_len` bytes, as the budget counts them."""
    if server.server_protocol in ("UDP", "RELP"):
        return 0
    if server.framing == "lf":
        return 1
    return len(str(message_len)) + 1


def message_limit(server: ServerConfig) -> int | None:
    """The most bytes a message (framing excluded) may have on `server`, or None (no limit)."""
    budget = server.message_budget
    if budget is None:
        return None
    if server.server_protocol in ("UDP", "RELP"):
        return budget
    if server.framing == "lf":
        return budget - 1
    n = budget - 2
    while n + len(str(n)) + 1 > budget:  # the octet count's digits are part of the budget
        n -= 1
    return n


@dataclass(frozen=True, slots=True)
class Fitted:
    """What the policy did to one oversize message: the message to send (None: nothing is sent), the
    action, the size of the untrimmed message and of the sent one (framing included, as the budget counts),
    and the removed fields (trim)."""

    message: bytes | None
    action: Action
    original: int
    sent: int
    removed: tuple[str, ...] = ()


class Oversizer:
    """Applies one server's budget and oversize policy to its messages (see the module docstring)."""

    __slots__ = ("server", "limit", "budget", "policy", "_formatter", "_bare")

    def __init__(self, server: ServerConfig, formatter: Formatter) -> None:
        self.server = server
        self.budget = server.message_budget
        self.limit = message_limit(server)
        self.policy = server.oversize_policy
        self._formatter = formatter
        self._bare: Formatter | None = None  # a mapped format without the raw event (trim's first step)

    def wire_size(self, message: bytes | None) -> int:
        return 0 if message is None else len(message) + framing_overhead(self.server, len(message))

    def fit(self, message: bytes, payload: bytes, stream: str, now: datetime) -> Fitted:
        """Apply the policy to `message` (the formatted `payload`), which is over `limit`."""
        assert self.limit is not None
        original = self.wire_size(message)
        if self.policy == "drop":
            return Fitted(None, "dropped", original, 0)
        if self.policy == "truncate":
            cut = self._formatter.syntax.cut(message, self.limit)
            return Fitted(cut, "truncated", original, self.wire_size(cut))
        trimmed = self._trim(payload, stream, now, original)
        if trimmed is None:
            return Fitted(None, "unfittable", original, 0)
        msg, removed = trimmed
        return Fitted(msg, "trimmed", original, self.wire_size(msg), removed)

    def _trim(
        self, payload: bytes, stream: str, now: datetime, original: int
    ) -> tuple[bytes, tuple[str, ...]] | None:
        try:
            event = json.loads(payload)
        except (ValueError, RecursionError):
            return None
        if not isinstance(event, dict):
            return None
        assert self.limit is not None
        syntax = self._formatter.syntax
        if not isinstance(syntax, MappedFormat):  # the marker is a key of the trimmed event's JSON
            formatter = self._formatter

            def render(ev: dict[str, Any]) -> bytes:
                return formatter.format_bytes(json.dumps(ev).encode(), stream, now)

            got = trim_event(event, stream, render, self.limit, original)
            return None if got is None else (got.message, got.removed)
        # a mapped format: the raw event goes first, and the marker is a field of its own, last
        bare = self._bare_formatter()
        mapped = stream.split(".")[0] in _MAPPED_STREAMS
        raw_first = (RAW_EVENT_LABEL,) if self.server.include_raw_event and mapped else ()

        def render_siem(ev: dict[str, Any]) -> bytes:
            message = bare.format_bytes(json.dumps(ev).encode(), stream, now)
            return message + syntax.field(SIEM_MARKER_KEY, json.dumps(ev[MARKER])).encode()

        got = trim_event(event, stream, render_siem, self.limit, original, raw_first)
        return None if got is None else (got.message, got.removed)

    def _bare_formatter(self) -> Formatter:
        if self._bare is None:
            if self.server.include_raw_event:
                self._bare = self._formatter.for_server(
                    self.server.model_copy(update={"include_raw_event": False})
                )
            else:
                self._bare = self._formatter
        return self._bare
