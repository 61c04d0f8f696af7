"""siemconn.queue.delivery: an ack records the delivery (count, last event, its time) and the destination's
state, as `status` shows them."""

from __future__ import annotations

import json
from pathlib import Path

from support.queues import T0, drain, timed_events, utc_time

from siemconn.commands.render import render_status
from siemconn.queue import DurableQueue, read_status
from siemconn.queue.status import report_dict


async def test_ack_records_delivery_and_state_for_status(tmp_path: Path) -> None:
    q = await DurableQueue.open(tmp_path, ["tcp1", "udp1"])
    try:
        await q.commit_page("detections", timed_events(range(1, 8)), 8)
        got = await drain(q, "tcp1", size=3)
        assert [e.event_id for e in got] == list(range(1, 8))
        await q.record_destination_state("tcp1", "up")
        await q.record_destination_state("udp1", "down", "connection refused")
        report = read_status(tmp_path)
    finally:
        await q.close()
    d = {x.destination: x for x in report.destinations}
    assert d["tcp1"].delivered == 7 and d["tcp1"].last_event_id == 7
    assert d["tcp1"].last_event_time == utc_time(T0 + 6 * 60)
    assert d["tcp1"].state == "up" and d["tcp1"].state_since is not None
    assert d["tcp1"].depth == 0
    assert d["udp1"].delivered == 0 and d["udp1"].depth == 7 and d["udp1"].oldest_age is not None
    assert d["udp1"].state == "down" and d["udp1"].reason == "connection refused"
    assert d["tcp1"].quarantined == 0  # the quarantine table exists (schema 2) and is empty
    text = render_status(report, protocols={"tcp1": "TCP", "udp1": "UDP"})
    assert "next_from" in text
    assert "server tcp1 (TCP): up since" in text
    assert "delivered: 7 events; last: id 7, event time " + utc_time(T0 + 6 * 60) in text
    assert "server udp1 (UDP): down since" in text and "connection refused" in text
    assert "sent: 0 events" in text  # UDP: sent, not delivered
    assert "backlog: 7 undelivered" in text
    data = json.loads(json.dumps(report_dict(report)))
    assert {x["destination"]: x["delivered"] for x in data["destinations"]} == {"tcp1": 7, "udp1": 0}
