"""The durable queue (the buffer between the RUX source and the syslog sink).

One SQLite file per data_dir holds every fetched page, a derived checkpoint per stream key and one
delivery cursor per syslog server. The values it stores and hands out (`Batch`, `Rejected`, the encoder)
are `siemconn.events`', shared with the source and the sink. Modules, one concept each:

* `schema`: file names, tables, DDL, schema version;
* `errors`: sqlite3/OS errors -> siemconn.errors' Queue*Error, with the file and the fix;
* `transaction`: BEGIN IMMEDIATE ... COMMIT, rolled back on any exception;
* `datadir`: data_dir permissions, the single-process lock, the "is this our file" check;
* `pagelog`: the persist-queue page log (one row per API page);
* `opening`: the I/O of opening a file, and `QueueState`, the in-memory state loaded from it;
* `routing`: which streams a destination takes, and how its cursor steps over the others;
* `commit`: the source side's writes (a page, its checkpoint, dedupe, quarantine rows);
* `reader`: the range read of a destination's next batch;
* `delivery`: the sink side (read, ack, the delivery record, a destination's quarantine);
* `housekeeping`: deleting pages every destination has passed;
* `space`: the caps, the disk floor, reclaiming space and when housekeeping runs;
* `reserve`: the disk reserve file that keeps room to ack and reclaim on a full disk;
* `diskfull`: the disk-full condition, and which writes may use the reserve;
* `assemble`: opening a `DurableQueue` (worker thread, file, reserve, limits);
* `replay`: replay requests, their windows and the feed a replay writer reads;
* `report`: the queue's log lines, each with its counter;
* `store`: `DurableQueue`, the engine's facade (the worker thread, the loop side);
* `quarantine`: the dead letter for events that cannot be stored or formatted;
* `status`: the read-only view behind `siemconn status` and `siemconn quarantine` (its text is
  `siemconn.commands.render`'s).
"""

from siemconn.queue.quarantine import QuarantinedEvent, export_row
from siemconn.queue.status import (
    DestinationStatus,
    QuarantineCount,
    StatusReport,
    StreamStatus,
    read_quarantine,
    read_status,
)
from siemconn.queue.store import DurableQueue

__all__ = [
    "DestinationStatus",
    "DurableQueue",
    "QuarantineCount",
    "QuarantinedEvent",
    "StatusReport",
    "StreamStatus",
    "export_row",
    "read_quarantine",
    "read_status",
]
