"""How many examples a property test runs: hypothesis' `max_examples`, scaled for `make test-fast`.

`make test` (and any run without SIEMCONN_TEST_FAST) runs each property with the count its test states,
the search the property was written with. `make test-fast` sets SIEMCONN_TEST_FAST=1: each property then
runs a tenth of its count (at least 10 examples), so a quick run still exercises every property while the
long search stays in the full suite. Examples hypothesis found failing before are replayed from its
example database first in either mode.
"""

from __future__ import annotations

import os

__all__ = ["FAST", "FAST_SHARE", "examples"]

FAST = os.environ.get("SIEMCONN_TEST_FAST", "") == "1"
FAST_SHARE = 10  # a fast run runs 1/FAST_SHARE of each property's examples
MIN_FAST = 10


def examples(full: int) -> int:
    """`full` examples in a full run, a tenth of them (at least MIN_FAST, at most `full`) in a fast one."""
    return min(full, max(MIN_FAST, full // FAST_SHARE)) if FAST else full
