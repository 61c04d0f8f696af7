"""The syslog sink: events from the queue, formatted, to each syslog server, acked after delivery.

Pure, no I/O: `format` (`Formatter`: one server's messages, framing, UDP fitting) over `formats` (one
module per output format and `FORMATS`, their registry), `cef` and `leef` (the SIEM-native text) over
`mapping` (one field mapping per stream), `wire` (a queue batch formatted and framed for one server).

Connections (asyncio): `transport` (the `Transport` contract, TCP/TLS `StreamTransport`,
`open_transport` for every protocol), `tcp` (opening and closing the stream under TCP, TLS and RELP),
`tls` (the client context and the TLS error messages), `udp` (paced datagrams), `relp` (RELP with
application acknowledgements).

Delivery: `writer` (one server's loop: read, format, write, ack, reconnect) and `pool` (one writer
task per server, the queue and health contracts, backoff, all-servers-down).
"""

from siemconn.syslog.format import Formatter, fit_datagram, format_message, frame
from siemconn.syslog.pool import WriterPool
from siemconn.syslog.transport import Transport, build_tls_context, open_transport

__all__ = [
    "Formatter",
    "Transport",
    "WriterPool",
    "build_tls_context",
    "fit_datagram",
    "format_message",
    "frame",
    "open_transport",
]
