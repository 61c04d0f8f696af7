"""The operator commands, one module each, above the service and the pipeline (as arq keeps its
`cli.py` on top): `siemconn.cli` parses the command line and dispatches here; nothing below imports
this package.

* `check`: `siemconn check`, each problem in one line;
* `status` (its text: `render`): `siemconn status [--json]`;
* `quarantine`: `siemconn quarantine export | count`;
* `sendtest`: `siemconn send-test`;
* `replay`: `siemconn replay`, a request the running service picks up (the SQL is `siemconn.queue.replay`'s);
* `locate`: where a running service's queue is (`locate_queue`), for status, quarantine and replay;
* `output`: the report line, quiet logging and redaction the commands share.

Each command returns an `ExitCode` (siemconn.exitcodes).
"""

__all__: list[str] = []
