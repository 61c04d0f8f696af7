"""siemconn.rux.cursor: the plausibility rule for a server's next_checkpoint (a bogus value cannot skip
events). The client applying it is in tests/unit/rux/test_client.py."""

from __future__ import annotations

from siemconn.rux.cursor import plausible_checkpoint


def test_plausible_checkpoint_rule() -> None:
    rule = plausible_checkpoint
    assert rule(11, cursor=5, request_from=5, limit=10, max_id=10).value == 11
    assert rule(10, cursor=5, request_from=5, limit=10, max_id=10).value == 10  # overlap servers
    got = rule(10**18, cursor=5, request_from=5, limit=10, max_id=10)
    assert (got.value, got.clamped_from, got.bound) == (11, 10**18, 11)
    assert rule(None, cursor=5, request_from=5, limit=10, max_id=10).value == 11
    assert rule(3, cursor=5, request_from=5, limit=10, max_id=4).value == 5  # never below the cursor
    assert rule(15, cursor=5, request_from=5, limit=10, max_id=None).value == 15
    assert rule(16, cursor=5, request_from=5, limit=10, max_id=None).value == 15
    assert rule(51, cursor=None, request_from=0, limit=1000, max_id=None).value == 51
    assert rule(5000, cursor=None, request_from=0, limit=1000, max_id=None).value is None
    assert rule(None, cursor=None, request_from=0, limit=1000, max_id=None).value is None
