"""The RUX stream table and query parameters (pure, no I/O).

Checkpoint keys: ``audit``, ``detections``, ``entity_scoring.account``, ``entity_scoring.host``,
``health``, ``lockdown``. entity_scoring is pulled once per entity type, each with its own checkpoint.

Two kinds of stream: the *event* streams (audit, detections, entity_scoring) page through
``/api/<version>/events/<name>`` from a checkpoint; the *snapshot* streams have no cursor: ``health``
(``/api/<version>/health``, one object) and ``lockdown`` (``/api/<version>/lockdown``, a bare array).

API v3.5 is known to serve ``events/detections`` only (the v3.5 integrations pull nothing else at
v3.5; Sentinel's v3.5 connector reads lockdown and entities at v3.4), so with ``api_version: v3.5`` every other stream is pulled
at v3.4, the newest version known to serve it (`stream_version`). The checkpoint keys do not name a
version: a version change continues from the same checkpoints. On v3.5 detections are asked for in
``ordering=id``: the cursor is an event id and ``next_checkpoint`` is the last id + 1, which skips
nothing only when a page holds the lowest ids after ``from`` (the API's default order is by
``event_timestamp``, which a late event with a higher id but an older timestamp breaks).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from siemconn.config import STREAM_DEFS, STREAM_TABLE, STREAMS, Configuration, StreamDef

__all__ = [
    "ALL_SPECS",
    "ENTITY_TYPES",
    "StreamSpec",
    "TIMESTAMP_FORMAT",
    "api_path",
    "build_params",
    "probe_params",
    "stream_specs",
    "stream_version",
]

# every per-stream fact is siemconn.config.streams' table; these are its views for the source
ENTITY_TYPES: tuple[str, ...] = STREAM_TABLE["entity_scoring"].entity_types
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

SNAPSHOT_STREAMS: tuple[str, ...] = tuple(d.name for d in STREAM_DEFS if d.snapshot is not None)
# the streams API v3.5 serves; the others stay at _BEFORE_V35 under api_version v3.5
V35_STREAMS: tuple[str, ...] = tuple(d.name for d in STREAM_DEFS if d.v35)
_BEFORE_V35 = "v3.4"


@dataclass(frozen=True)
class StreamSpec:
    """One pull unit: a stream, and for entity_scoring one entity type."""

    stream: str
    entity_type: str | None = None

    def __post_init__(self) -> None:
        if self.stream not in STREAM_TABLE:
            raise ValueError(f"unknown stream {self.stream!r}; expected one of {', '.join(STREAMS)}")
        types = STREAM_TABLE[self.stream].entity_types
        if types:
            if self.entity_type not in types:
                raise ValueError(
                    f"{self.stream} needs entity_type {' or '.join(map(repr, types))}, got {self.entity_type!r}"
                )
        elif self.entity_type is not None:
            raise ValueError(f"stream {self.stream!r} takes no entity_type")

    @property
    def key(self) -> str:
        """The checkpoint key: audit, detections, entity_scoring.account, entity_scoring.host."""
        return f"{self.stream}.{self.entity_type}" if self.entity_type else self.stream

    @property
    def path(self) -> str:
        """The path below /api/<version>/: events/audits, events/detections, events/entity_scoring,
        health, lockdown."""
        return self.definition.endpoint

    @property
    def definition(self) -> StreamDef:
        """The stream's entry in the stream table (siemconn.config.streams)."""
        return STREAM_TABLE[self.stream]

    @property
    def is_snapshot(self) -> bool:
        """True for health and lockdown: no cursor, the whole answer each poll."""
        return self.definition.snapshot is not None

    @property
    def snapshot(self) -> str | None:
        """How a snapshot stream's answer becomes events (OBJECT_SNAPSHOT, LIST_SNAPSHOT), or None."""
        return self.definition.snapshot

    @property
    def role(self) -> str:
        """The Vectra API-client role this stream needs."""
        return self.definition.role


ALL_SPECS: tuple[StreamSpec, ...] = tuple(
    StreamSpec(d.name, entity_type) for d in STREAM_DEFS for entity_type in (d.entity_types or (None,))
)


def stream_specs(stream: str) -> list[StreamSpec]:
    """The specs of one configured stream (entity_scoring gives account and host)."""
    specs = [s for s in ALL_SPECS if s.stream == stream]
    if not specs:
        raise ValueError(f"unknown stream {stream!r}; expected one of {', '.join(STREAMS)}")
    return specs


def stream_version(spec: StreamSpec, api_version: str) -> str:
    """The API version `spec` is pulled at: `api_version`, except that under v3.5 a stream v3.5 does not
    serve (all but detections) stays at v3.4."""
    if api_version == "v3.5" and spec.stream not in V35_STREAMS:
        return _BEFORE_V35
    return api_version


def api_path(spec: StreamSpec, api_version: str) -> str:
    """The URL path of a stream, e.g. /api/v3.3/events/detections (see `stream_version`)."""
    return f"/api/{stream_version(spec, api_version)}/{spec.path}"


def _bool(v: bool) -> str:
    return "true" if v else "false"


def build_params(
    spec: StreamSpec, configuration: Configuration, checkpoint: int | None, now: datetime
) -> dict[str, str]:
    """Query parameters of the first request of a run.

    With a checkpoint: ``from=<checkpoint>``. Without one (first run): ``from=0`` plus
    ``event_timestamp_gte = now - initial_lookback_hours`` (lookback 0 = start from now).
    Optional filters are sent only when set in the configuration. v3.5 detections add ``ordering=id``
    (pages in cursor order, see the module docstring) and ``size`` when `detection_size` is set.
    """
    params: dict[str, str] = {}
    if checkpoint is None:
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        start = now.astimezone(UTC) - timedelta(hours=configuration.initial_lookback_hours)
        params["from"] = "0"
        params["event_timestamp_gte"] = start.strftime(TIMESTAMP_FORMAT)
    else:
        params["from"] = str(checkpoint)
    params["limit"] = str(configuration.page_size)
    if spec.stream == "entity_scoring":
        assert spec.entity_type is not None
        params["type"] = spec.entity_type
        if configuration.include_score_decreases is not None:
            params["include_score_decreases"] = _bool(configuration.include_score_decreases)
    if spec.stream == "detections":
        if configuration.include_triaged is not None:
            params["include_triaged"] = _bool(configuration.include_triaged)
        if configuration.include_info_category is not None:
            params["include_info_category"] = _bool(configuration.include_info_category)
        if stream_version(spec, configuration.api_version) == "v3.5":
            params["ordering"] = "id"
            if configuration.detection_size is not None:
                params["size"] = configuration.detection_size
    return params


def probe_params(spec: StreamSpec, configuration: Configuration, now: datetime) -> dict[str, str]:
    """Query parameters of `siemconn check`'s one-event request: a first-run request with limit=1
    (snapshot streams take no parameters)."""
    if spec.is_snapshot:
        return {}
    return {**build_params(spec, configuration, None, now), "limit": "1"}
