"""The library floor: what the two unavoidable C calls cost per event, before any siemconn code runs.

Every event siemconn forwards has to be parsed from the API page and re-encoded in the reference's byte
shape, which is exactly `json.dumps(event)` (", " / ": " separators, ASCII escapes). Both are C code
(orjson for the parse, CPython's `_json` encoder for the output) and both hold the GIL, so in one Python
process their sum is a lower bound on CPU per event and its inverse an upper bound on events/s, whatever
the rest of the pipeline does. This measures them on the bench's own events (the fake tenant's generator,
same stream mix, two thirds with non-ASCII text), in pages of 1,000, best of 5 rounds of CPU time:

  * parse      `orjson.loads(page)` per event, and with the collector paused (siemconn's parse)
  * encode     the stdlib C encoder prebuilt (byte-identical to json.dumps), siemconn's ujson encoder
               (routed to the stdlib one where it would differ) and its C encoder (the default where
               built), per event
  * json.dumps the stdlib call itself, for reference
  * orjson.dumps  compact, non-ASCII output: NOT the reference shape (what a different output would cost)

    python bench/floor.py
"""

from __future__ import annotations

import gc
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

from siemconn.devtools.events import EventFactory
from siemconn.events.encoder import encode_event_c, encode_event_fast, encode_event_stdlib, encode_event_ujson
from siemconn.ops.gctune import parse_paused

PAGE = 1000
ROUNDS = 5


# the end-to-end bench's mix at a tenth of its size: 100,000 detections, 10,000 audits, 10,000 entity scores
MIX = ("detections",) * 10 + ("audits", "entity_scoring")


def _pages() -> list[bytes]:
    """Pages of the fake's generated events, rendered the way the fake serves them (API v3.3)."""
    f = EventFactory(seed=1)
    pages: list[bytes] = []
    for p, stream in enumerate(MIX):
        bodies = [f.make(stream, 1 + p * PAGE + i, 1.7e9 + i, "host").body("v3.3") for i in range(PAGE)]
        pages.append(b'{"events": [' + b",".join(bodies) + b'], "next_checkpoint": 1, "remaining_count": 0}')
    return pages


def _each(fn: Callable[[Any], Any], items: list[Any]) -> Callable[[], None]:
    """Call fn on every item, dropping each result at once (as the pipeline does: memory is reused)."""

    def go() -> None:
        for item in items:
            fn(item)

    return go


def _best_us_per_event(fn: Callable[[], Any], events: int) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best * 1e6 / events


def run() -> dict[str, float]:
    pages = _pages()
    parsed = [orjson.loads(p)["events"] for p in pages]
    events = [e for page in parsed for e in page]
    n = len(events)
    assert all(encode_event_fast(e) == json.dumps(e) for e in events)
    gc.collect()
    out = {
        "event_json_bytes": sum(len(p) for p in pages) / n,
        "parse_us": _best_us_per_event(_each(orjson.loads, pages), n),
        "parse_paused_us": _best_us_per_event(_each(lambda p: parse_paused(orjson.loads, p), pages), n),
        "encode_us": _best_us_per_event(_each(encode_event_stdlib, events), n),
        "encode_fast_us": _best_us_per_event(_each(encode_event_fast, events), n),
        "encode_ujson_us": _best_us_per_event(_each(encode_event_ujson, events), n),
        "encode_c_us": _best_us_per_event(_each(encode_event_c or encode_event_ujson, events), n),
        "json_dumps_us": _best_us_per_event(_each(json.dumps, events), n),
        "orjson_dumps_us": _best_us_per_event(_each(orjson.dumps, events), n),
    }
    out["floor_us"] = out["parse_us"] + out["encode_us"]
    out["max_events_per_s"] = 1e6 / out["floor_us"]
    out["fast_floor_us"] = out["parse_paused_us"] + out["encode_fast_us"]
    out["fast_max_events_per_s"] = 1e6 / out["fast_floor_us"]
    return out


def main() -> int:
    r = run()
    for k, v in r.items():
        print(f"{k:18s} {v:10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
