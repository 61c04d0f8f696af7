"""Envelope leniency, end to end: pages whose events are valid but whose envelope deviates from the
documented shape are delivered exactly once (service subprocess, fake RUX, rsyslogd)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from support.e2e import Connector, start_fake
from support.reliability import delivered, figure, log_events, status_checkpoints, tally, wait_for
from support.rsyslog import RsyslogReceiver

pytestmark = pytest.mark.e2e

# (the fake's Knobs.envelope value, the deviation kinds it must log, ambiguous)
DEVIATIONS = [
    ("no_remaining", {"remaining_count:missing"}, False),
    ("string_numbers", {"next_checkpoint:string", "remaining_count:string"}, False),
    ("float_numbers", {"next_checkpoint:float", "remaining_count:float"}, False),
    ("no_checkpoint", {"next_checkpoint:missing"}, False),
    ("negative_remaining", {"remaining_count:negative"}, False),
    ("extra_keys", set(), False),
    ("renamed", {"events:renamed"}, False),
    ("wrapped", {"envelope:wrapped"}, False),
    ("camel_case", {"next_checkpoint:renamed", "remaining_count:renamed"}, False),
    ("bool_checkpoint", {"next_checkpoint:boolean"}, True),
    ("text_checkpoint", {"next_checkpoint:string"}, True),
    ("bare", {"envelope:bare_array"}, True),
]


def test_deviating_envelopes_deliver_every_event_once(tmp_path: Path, rsyslog: RsyslogReceiver) -> None:
    """Each class of envelope deviation in turn, on every stream: the new events are delivered, no pull
    fails, each kind of deviation is logged once per stream (not per tick), and at the end the
    checkpoints stand at the heads with nothing missing or repeated."""
    fake = start_fake(seed_detections=20)
    conn = Connector(
        tmp_path / "c",
        fake.url,
        [rsyslog.server_entry("tcp1", "TCP")],
        schedule="* * * * * *",
        page_size=7,
    ).start()
    try:
        wait_for(lambda: delivered(rsyslog, fake, "tcp"), 40, "the seeded events")
        for envelope, _kinds, _ambiguous in DEVIATIONS:
            fake.configure(envelope=envelope)
            fake.append("detections", 16)
            fake.append("audits", 3)
            fake.append("entity_scoring", 4)
            wait_for(lambda: delivered(rsyslog, fake, "tcp"), 60, f"the events under envelope {envelope}")
            assert not log_events(conn, "pull_failed"), (envelope, log_events(conn, "pull_failed")[:3])
            assert conn.alive()
        fake.configure(envelope="")
        fake.append("detections", 5)
        wait_for(lambda: delivered(rsyslog, fake, "tcp"), 30, "the documented envelope again")
        wait_for(
            lambda: status_checkpoints(conn)["detections"] == fake.heads()["detections"], 30, "the checkpoint"
        )
        assert conn.terminate() == 0
    finally:
        conn.kill()
        fake.stop()
    s = tally(rsyslog, fake, "tcp")
    devs = log_events(conn, "rux_envelope_deviation")
    per_kind = Counter((d["stream"], d["kind"]) for d in devs)
    figure("envelope_deviations", {**s, "deviation_lines": len(devs), "kinds": len(per_kind)})
    assert s["missing"] == 0 and s["duplicated"] == 0 and s["unexpected"] == 0, s
    assert all(n == 1 for n in per_kind.values()), per_kind  # once per stream and kind, not per tick
    logged = {k for _, k in per_kind}
    for envelope, kinds, ambiguous in DEVIATIONS:
        assert kinds <= logged, (envelope, kinds, logged)
        for d in devs:
            if d["kind"] in kinds and d["stream"] == "detections":
                assert d["ambiguous"] is ambiguous or d["kind"] == "next_checkpoint:string", d
                assert d["value"] and d["meaning"], d
