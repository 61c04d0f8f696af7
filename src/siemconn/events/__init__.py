"""The event model shared by the source (`rux`), the buffer (`queue`) and the sink (`syslog`), as Vector's
`vector-core/event` is shared by its sources and sinks: none of the three imports another for it.

* `batch`: the value types `Batch`, `Segment`, `QueuedEvent`;
* `encoder`: event -> payload text, `json.dumps` byte for byte (`encode_event`; C code in `_jsonenc.c`);
* `transcode`: an API page's text -> each event's stored text and id, without building objects
  (`transcode_page`, `EncodedEvents`; C code in `_transcode.c`);
* `rejected`: an event set aside with a reason (`Rejected`, `REASONS`), for the queue's quarantine;
* `eventtime`: an event's own time (`event_timestamp`), the one rule the syslog header, CEF/LEEF, the
  replay window and the delivery record read it by.
"""

from siemconn.events.batch import Batch, QueuedEvent, Segment
from siemconn.events.encoder import encode_event
from siemconn.events.rejected import Rejected

__all__ = ["Batch", "QueuedEvent", "Rejected", "Segment", "encode_event"]
