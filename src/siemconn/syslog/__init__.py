"""The syslog sink: pure formatting (`format`), asyncio connections (`transport`), writers (`pool`)."""

from siemconn.syslog.format import Formatter, encode_event, fit_datagram, format_message, frame
from siemconn.syslog.pool import WriterPool
from siemconn.syslog.transport import Transport, build_tls_context, open_transport

__all__ = [
    "Formatter",
    "Transport",
    "WriterPool",
    "build_tls_context",
    "encode_event",
    "fit_datagram",
    "format_message",
    "frame",
    "open_transport",
]
