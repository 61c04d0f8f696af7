"""siemconn.rux.retry: Retry-After read as seconds or an HTTP date, with a default and a cap. The retries
themselves, against the fake tenant, are in tests/unit/rux/test_client.py."""

from __future__ import annotations

from siemconn.rux.client import parse_retry_after


def test_parse_retry_after() -> None:
    assert parse_retry_after("12", 30, 300) == 12
    assert parse_retry_after(None, 30, 300) == 30
    assert parse_retry_after("junk", 30, 300) == 30
    assert parse_retry_after("-5", 30, 300) == 0
    assert parse_retry_after("100000", 30, 300) == 300
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", 30, 300, now=1445412480.0) == 10
