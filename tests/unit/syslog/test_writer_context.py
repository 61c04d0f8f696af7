"""A `ServerWriter` needs its `WriterContext` only (siemconn.syslog.contracts), never a `WriterPool`: here
a plain context, the in-memory queue (`MemQueue`) and a transport that records its writes drive it. The
give-up rule is the `RetryPolicy` the context gives: a policy of `retry_count` 1 declares the server down
after two failed connects, the same policy's `forever()` (what a replay's writer gets) never does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from siemconn.config import ServerConfig
from siemconn.devtools.harness import wait_until_async
from siemconn.errors import DeliveryError
from siemconn.ops.metrics import NO_METRICS, Metrics
from siemconn.syslog.contracts import HealthLike, Opener, QueueLike, WriterContext
from siemconn.syslog.heartbeat import HeartbeatSource
from siemconn.syslog.memqueue import MemQueue, cursor_at
from siemconn.syslog.retrypolicy import RetryPolicy
from siemconn.syslog.transport import Transport
from siemconn.syslog.writer import DOWN, RETRYING, UP, ServerWriter


class Recording:
    """A transport that keeps what it was given."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    async def write(self, frames: list[bytes]) -> None:
        self.frames.extend(frames)

    async def close(self) -> None:
        return None

    def is_closing(self) -> bool:
        return False


@dataclass
class Context:
    """Everything a writer is given, with no pool behind it."""

    queue: QueueLike
    opener: Opener
    retry: RetryPolicy
    cert_dir: Path = Path(".")
    metrics: Metrics = NO_METRICS
    health: HealthLike | None = None
    heartbeat_source: HeartbeatSource | None = None
    wall_clock: Callable[[], datetime] = lambda: datetime(2026, 1, 1, tzinfo=UTC)
    sleep: Callable[[float], Awaitable[None]] = lambda _delay: asyncio.sleep(0)
    monotonic: Callable[[], float] = time.monotonic
    connect_timeout: float = 1.0
    write_timeout: float = 1.0
    settle_seconds: float = 0.0
    batch_size: int = 2
    drain_batch_size: int = 2
    drain_batch_bytes: int = 1 << 20
    server_streams: Mapping[str, Any] = field(default_factory=dict)
    states: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def stopping(self) -> bool:
        return self.stop.is_set()

    def server_changed(self) -> None:
        return None

    def state_changed(self, name: str, state: str, reason: str = "") -> None:
        self.states.append(state)

    async def until_stopped(self, aw: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(aw)
        stopped = asyncio.ensure_future(self.stop.wait())
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        for t in (task, stopped):
            t.cancel()


def _server() -> ServerConfig:
    return ServerConfig.model_validate(
        {"name": "s", "server_protocol": "TCP", "server_host": "127.0.0.1", "server_port": 9}
    )


async def _run_until(ctx: Context, done: Callable[[ServerWriter], bool]) -> ServerWriter:
    context: WriterContext = ctx
    writer = ServerWriter(context, _server())
    task = asyncio.create_task(writer.run())
    try:
        await wait_until_async(lambda: done(writer), 15.0)
    finally:
        ctx.stop.set()
        await asyncio.wait_for(task, 10)
    return writer


async def test_a_writer_delivers_and_acks_with_a_plain_context() -> None:
    q = MemQueue(["s"])
    q.put("audit", [{"id": i} for i in range(1, 6)])
    wire = Recording()

    async def opener(*_a: Any, **_kw: Any) -> Transport:
        return wire

    ctx = Context(q, opener, RetryPolicy(0))
    await _run_until(ctx, lambda _w: cursor_at(q, "s", 5)())
    assert [b'{"id": %d}' % i in b"".join(wire.frames) for i in range(1, 6)] == [True] * 5
    assert [len(b.events) for b in q.acks["s"]] == [2, 2, 1]  # the context's batch_size
    assert ctx.states == [UP]


async def _refused(*_a: Any, **_kw: Any) -> Transport:
    raise DeliveryError("connection refused")


async def test_the_writer_gives_up_by_the_policy_it_is_given() -> None:
    ctx = Context(MemQueue(["s"]), _refused, RetryPolicy(1, 0.01))
    with capture_logs() as logs:
        await _run_until(ctx, lambda _w: DOWN in ctx.states)
    assert ctx.states == [RETRYING, DOWN]  # then probed, quietly, without another change
    [down] = [e for e in logs if e["event"] == "syslog_server_down"]
    assert (down["failures"], down["retry_count"]) == (2, 1)


async def test_a_policy_that_retries_forever_never_declares_the_server_down() -> None:
    ctx = Context(MemQueue(["s"]), _refused, RetryPolicy(1, 0.01).forever())
    writer = await _run_until(ctx, lambda w: w.failures >= 6)
    assert DOWN not in ctx.states and ctx.states == [RETRYING]
    assert writer.failures >= 6
