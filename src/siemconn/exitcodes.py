"""Process exit codes (documented in the README and in `siemconn --help`)."""

OK = 0
UNEXPECTED = 1
CONFIG = 2
ALL_SERVERS_DOWN = 3
USAGE = 64  # sysexits.h EX_USAGE: bad command line (2 stays reserved for an invalid config)
BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader of stdout went away (`siemconn status | head -2`)
