"""Process exit codes (documented in the README)."""

OK = 0
UNEXPECTED = 1
CONFIG = 2
ALL_SERVERS_DOWN = 3
