"""`siemconn replay --server NAME --since TIME [--until TIME] [--stream S]`: ask the running service to
re-send the retained events of a window to one server; `--sent-since TIME [--sent-until TIME]` selects by
the time the events were sent to that server instead (siemconn.queue.replay).

The command does not send anything itself: it checks that the request can be met (the server, the stream,
retention on, the window within what is retained) and inserts one row into the queue's `replays` table in
a short SQLite transaction. That is safe beside the running service: the queue is in WAL mode, SQLite
serialises writers (busy timeout), and the data_dir lock (`queue.lock`) only keeps a second *service*
out. The service picks the request up within a heartbeat and reports progress in `siemconn status`.
TIME is the event's own time (`event_timestamp`), or with --sent-*, the time that server acknowledged
them (see siemconn.queue.replay).
"""

from __future__ import annotations

import argparse
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from siemconn.commands.locate import locate_queue
from siemconn.config import STREAMS, Configuration, load_configuration
from siemconn.errors import ConfigError, ReplayRefusedError
from siemconn.exitcodes import ExitCode
from siemconn.queue.replay import submit_request
from siemconn.queue.schema import DB_FILE
from siemconn.queue.status import read_status

__all__ = ["parse_time", "request_replay"]

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])(?:\s+ago)?$")
_UNIT = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_time(text: str, now: float | None = None) -> float:
    """ISO 8601 (a time without a zone is UTC), `now`, or a duration ago such as `2h`, `30m`, `1d`.
    Raises ValueError naming the accepted forms."""
    now = time.time() if now is None else now
    t = text.strip()
    if t.lower() == "now":
        return now
    m = _RELATIVE.match(t.lower())
    if m:
        return now - float(m.group(1)) * _UNIT[m.group(2)]
    try:
        dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time; expected ISO 8601 such as 2026-12-01T10:00:00Z (UTC if no zone), "
            "'now', or a duration ago such as 2h, 30m, 1d"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _fmt(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fail(err: TextIO, message: str, code: int = ExitCode.UNEXPECTED) -> int:
    print(f"error: replay not requested: {message}", file=err)
    return code


def _check_request(cfg: Configuration, server: str, stream: str | None) -> str | None:
    names = [s.name for s in cfg.server]
    if server not in names:
        return f"server {server!r} is not in the configuration; servers: {', '.join(names)}"
    if stream is not None:
        if stream not in STREAMS:
            return f"--stream {stream!r} is not a stream; expected one of {', '.join(STREAMS)}"
        conf = next(s for s in cfg.server if s.name == server)
        if not conf.takes(stream):
            return f"server {server!r} does not take stream {stream!r} (its streams: {', '.join(conf.streams or ())})"
    if cfg.retain_hours <= 0:
        return (
            "retain_hours is 0 in the configuration, so delivered events are not kept; set "
            '"retain_hours" (e.g. 24), reload the service (kill -HUP), and replay events delivered after that'
        )
    return None


def request_replay(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Validate and insert one replay request; print what will happen. Exit 0 when requested."""
    try:
        cfg = load_configuration(args.config)
    except ConfigError as exc:
        print(f"error: invalid configuration\n{exc.render()}", file=err)
        return ExitCode.CONFIG
    now = time.time()
    by_sent = args.sent_since is not None
    first, last = ("--sent-since", "--sent-until") if by_sent else ("--since", "--until")
    if (args.sent_until if not by_sent else args.until) is not None:
        return _fail(
            err, f"use {last} with {first} (--until goes with --since, --sent-until with --sent-since)"
        )
    try:
        since = parse_time(args.sent_since if by_sent else args.since, now)
        end_text = args.sent_until if by_sent else args.until
        until = parse_time(end_text, now) if end_text else now
    except ValueError as exc:
        return _fail(err, str(exc))
    if since >= until:
        return _fail(err, f"{first} {_fmt(since)} is not before {last} {_fmt(until)}")
    problem = _check_request(cfg, args.server, args.stream)
    if problem:
        return _fail(err, problem)
    loc = locate_queue(Path(args.config), cfg.data_dir, args.data_dir)
    db = loc.data_dir / DB_FILE
    print(f"queue: {db} ({loc.how})", file=out)
    if not db.exists():
        return _fail(err, f"no queue database at {db}; {loc.not_found_hint()}")
    try:
        replay_id, events = submit_request(
            db, args.server, since, until, args.stream, now, retain_hours=cfg.retain_hours, by_sent=by_sent
        )
    except ReplayRefusedError as exc:
        return _fail(err, str(exc))
    running = read_status(loc.data_dir).running_pid
    what = f"stream {args.stream}" if args.stream else "every stream it takes"
    selected = (
        f"the events sent to it in [{_fmt(since)}, {_fmt(until)}) ({events} events of every stream)"
        if by_sent
        else f"events with event time in [{_fmt(since)}, {_fmt(until)})"
    )
    print(f"replay #{replay_id} requested: server {args.server}, {what}, {selected}", file=out)
    if running is not None:
        print(
            f"the running service (pid {running}) starts it within seconds; follow it with `siemconn status`",
            file=out,
        )
    else:
        print("no service is running on this queue: the replay starts when it starts", file=out)
    return ExitCode.OK
