"""An API page's JSON text -> its events' stored form, without building the events as Python objects.

Parsing a page into dicts (orjson), encoding each dict again (`encoder.encode_events`) and freeing the
dicts is most of the CPU an event costs. For the pages it vouches for, the C transcoder
(`_transcode.c`) writes each event's `json.dumps(json.loads(event))` straight from the page's
text, so the bytes stored are the ones the parse-and-encode path would store (tests/unit/events/test_transcode.py
proves it with hypothesis against that path). It returns None, and the caller parses the page as before,
for anything it does not parse exactly as that path would:

* not strict JSON; a string with invalid UTF-8, a raw control character or an escaped lone surrogate;
* an integer of more than 18 digits (the parser's path keeps any size exactly); a float that is not
  finite once parsed;
* an object with a repeated key (json keeps the first position and the last value) or more than 256
  keys; nesting deeper than 256 levels;
* an envelope that is not an object with exactly one "events" array of objects; an event whose
  top-level "id" is neither an integer nor null.

Invariant: `EncodedEvents` holds, for each event in order, `json.dumps(event)` (its `text`, newline-
joined, the page log's stored form) and `event.get("id")`. As a `Sequence` it reads like the list of
dicts it replaces (each item is decoded on access), so code that inspects events keeps working; the
queue's commit uses `text` and `ids` directly.

`SIEMCONN_FAST_ENCODER=ujson` or `off` (see encoder) turns the transcoder off with the C encoder.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import accumulate
from typing import Any, overload

import orjson

from siemconn.events import encoder

__all__ = ["EncodedEvents", "TRANSCODER", "transcode_page"]


class EncodedEvents(Sequence[dict[str, Any]]):
    """A page's events in their stored form: `text` is `json.dumps(event)` for each, joined with newlines;
    `ends[i]` is where event i ends in `text`; `ids[i]` is its top-level "id" (an int) or None.

    Reading an item decodes it (a dict equal to the parsed event); that is for inspection, not the
    pipeline's path."""

    __slots__ = ("ends", "ids", "text")

    def __init__(self, text: str, ends: list[int], ids: list[int | None]) -> None:
        if len(ends) != len(ids):
            raise ValueError("EncodedEvents: one end and one id per event")
        self.text = text
        self.ends = ends
        self.ids = ids

    def __len__(self) -> int:
        return len(self.ids)

    def payloads(self) -> list[str]:
        """Each event's json.dumps text."""
        text = self.text
        if not self.ends:
            return []
        starts = [0, *(e + 1 for e in self.ends[:-1])]
        return [text[s:e] for s, e in zip(starts, self.ends, strict=True)]

    def select(self, keep: Sequence[bool]) -> EncodedEvents:
        """The events whose `keep` is true, in order (self when all are kept)."""
        if all(keep):
            return self
        payloads = [p for p, k in zip(self.payloads(), keep, strict=True) if k]
        ids = [i for i, k in zip(self.ids, keep, strict=True) if k]
        return EncodedEvents.from_payloads(payloads, ids)

    @classmethod
    def from_payloads(cls, payloads: Sequence[str], ids: list[int | None]) -> EncodedEvents:
        """Events from their json.dumps texts (which never hold a raw newline) and their ids."""
        ends = [e - 1 for e in accumulate(len(p) + 1 for p in payloads)]
        return cls("\n".join(payloads), ends, ids)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [orjson.loads(p) for p in self.payloads()[index]]
        i = range(len(self.ends))[index]  # IndexError and negative indexes as a list's
        start = self.ends[i - 1] + 1 if i else 0
        event: dict[str, Any] = orjson.loads(self.text[start : self.ends[i]])
        return event

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for p in self.payloads():
            event: dict[str, Any] = orjson.loads(p)
            yield event

    def __eq__(self, other: object) -> bool:
        if isinstance(other, EncodedEvents):
            return self.text == other.text and self.ids == other.ids
        if isinstance(other, list):
            return list(self) == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable-looking like the list it stands for

    def __repr__(self) -> str:
        return f"EncodedEvents({len(self)} events, {len(self.text)} chars)"


def _load() -> Any:
    """The C transcoder module (`_transcode.c`), or None where the package was built without it."""
    try:
        from siemconn.events import _transcode
    except ImportError:
        return None
    return _transcode


_c = _load() if encoder.ENCODER == "c" else None
TRANSCODER: bool = _c is not None
"""Whether pages are transcoded (the C encoder is built and not switched off)."""


def transcode_page(body: bytes) -> tuple[EncodedEvents, bytes] | None:
    """(the page's events, its envelope with `"events": []` in their place), or None where the
    transcoder does not vouch for the page (module docstring): the caller then parses `body`."""
    if _c is None:
        return None
    got = _c.transcode_page(body)
    if got is None:
        return None
    text, ends, ids, start, end = got
    return EncodedEvents(text, ends, ids), body[:start] + b"[]" + body[end:]
